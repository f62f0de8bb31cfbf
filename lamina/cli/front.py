"""The ``lamina`` program's first step: a read-only command goes to a running ``lamina serve``
or to the engine cache, any other command to the engine cache's fork server.

An in-process command builds the engine in its own interpreter: ``argparse``, ``json``, ``re``
and the stores load before any work, 20-30 ms that the docker CLI (a compiled program talking
to a daemon whose engine is warm) never pays.  When a ``lamina serve`` is running, a read-only
command (:data:`FORWARDED`: ``ps``, ``images``, ``inspect``, ...) is handed to it whole, its
command line as given: the daemon parses it with the same parser, runs it with the same code
against its own engine (:mod:`lamina.cli.forwarded`) and sends back what it printed and its
exit code.  This module loads nothing but ``_socket`` and
:mod:`lamina.stdcopy` (``struct``) for that; anything else (another command,
a global option other than ``-H``, ``--help``, no daemon, a daemon that is not lamina or uses
another data root) runs :func:`lamina.cli.main.run` as before.  The output is the same either
way, byte for byte (``tests/server/test_forwarded.py`` and ``test_enginecache.py`` compare them).

Which daemon:

* with ``-H unix://PATH`` (or ``LAMINA_HOST`` / ``DOCKER_HOST``): that one; the user chose it.
  A daemon that does not know the request (dockerd: 404) gets the command the usual way, as
  API requests from :mod:`lamina.cli.main`.
* else, for root, ``lamina serve``'s default socket (``/run/lamina.sock``) when a daemon
  listens there and it serves the engine this command would build in-process: the request
  names the data root and exec root (``LAMINA_DATA_ROOT`` / ``LAMINA_EXEC_ROOT`` or their
  defaults) and a daemon with others answers 409.  Not when an environment variable changes
  the engine (:data:`_ENGINE_ENVIRONMENT`), not when ``LAMINA_FORWARD=0``;
* then, on the same conditions, the engine cache of this identity (:func:`cache_socket`,
  :mod:`lamina.cli.enginecache`): a warm engine that a previous command left.  When neither took
  the command, it runs in-process and, at its exit, starts that cache for the next ones.  For
  an unprivileged user the cache is the only one asked (a rootless ``lamina serve`` is reached
  with ``-H``): it runs inside the user's rootless namespaces (:mod:`lamina.rootless`), started
  by an in-process command that joined them, under the rootless exec root.

Any other command (``run``, ``create``, ``rm``, ``build``, ``load``..., but not
:data:`lamina.cli.forkserver.NOT_FORKED`), on the same conditions and never with a daemon
named: the cache's fork server runs it in a fork of the warm cache, a worker that takes this
process's descriptors 0-2, working directory, environment and umask and runs the command as
this process would (:func:`lamina.cli.forkserver.run_forked`: this process waits for the
worker's exit status, relays its signals to it and exits with that status).  With no fork
server, the command runs in-process and, at its exit, starts the cache.

The program ``make`` installs as ``lamina`` is the compiled front (``lamina/cli/front.c``, built
by :mod:`lamina.cli.frontbuild`): the same client of the fork server without an interpreter's
start (12-16 ms here), which chooses the fork server by :func:`cache_socket`'s key and runs this
module, with the same command line and environment, for whatever it does not handle itself
(everything but a command for a fork server that takes it; reads go to the fork server too).

The exchange (one connection, closed after it), HTTP/1.1 as the rest of the Engine API::

    POST /lamina/command HTTP/1.1
    Lamina-Data-Root: /var/lib/lamina        (default socket only; percent-free absolute paths)
    Lamina-Exec-Root: /run/lamina
    Lamina-Columns: 120                       (the terminal's width, when stdout is one)
    Lamina-Time-Zone: Europe/Paris            (the client's TZ, when set: a daemon with another answers 409)
    Content-Length: N

    ps\\0-a\\0--format\\0{{.Names}}               (the words after the global options, NUL-separated)

    HTTP/1.1 200 OK
    Content-Type: application/vnd.docker.multiplexed-stream
    Lamina-Exit-Code: 0
    Content-Length: M

    [stdcopy frames: stdout (1) and stderr (2), in the order they were written]

The whole answer is read before anything is printed: a daemon that dies half-way, or that
keeps silent for :data:`ANSWER_TIMEOUT` seconds, leaves nothing printed, and the command runs
in-process instead (it only reads, so running it twice
changes nothing).  Any answer but 200 also runs it in-process, as does a body that is not
whole :mod:`lamina.stdcopy` frames of stdout and stderr.
"""

from __future__ import annotations

import os
import sys

from lamina.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED
from lamina.defaults import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT, DEFAULT_SOCKET, rootless_data_root, rootless_exec_root

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["FORWARDED", "COMMAND_PATH", "DATA_ROOT_HEADER", "EXEC_ROOT_HEADER", "COLUMNS_HEADER",
           "EXIT_CODE_HEADER", "TIME_ZONE_HEADER", "CACHE_DIRECTORY", "cache_socket", "fork_socket", "forward", "interpreter_identity", "is_forwarded", "run",
           "terminal_columns"]

#: The commands a daemon runs for the program: they only read, print a table or JSON that
#: depends on nothing of the client's but its command line, and never read stdin.
FORWARDED: frozenset[tuple[str, ...]] = frozenset({
    ("ps",), ("container", "ls"), ("container", "list"), ("container", "ps"),
    ("images",), ("image", "ls"), ("image", "list"),
    ("inspect",), ("container", "inspect"), ("image", "inspect"),
    ("history",), ("image", "history"),
    ("port",), ("container", "port"),
    ("top",), ("container", "top"),
    ("diff",), ("container", "diff"),
    ("volume", "ls"), ("volume", "list"), ("volume", "inspect"),
    ("network", "ls"), ("network", "list"), ("network", "inspect"),
    ("system", "df"),
})
_GROUPS = frozenset(words[0] for words in FORWARDED if len(words) == 2)

COMMAND_PATH = "/lamina/command"
DATA_ROOT_HEADER = "Lamina-Data-Root"
EXEC_ROOT_HEADER = "Lamina-Exec-Root"
COLUMNS_HEADER = "Lamina-Columns"
TIME_ZONE_HEADER = "Lamina-Time-Zone"
EXIT_CODE_HEADER = "Lamina-Exit-Code"

#: variables that make the in-process engine differ from a daemon's in what a read shows
_ENGINE_ENVIRONMENT = ("LAMINA_STORAGE_DRIVER", "LAMINA_USERNS_REMAP", "LAMINA_USERNS_REMAP_LAYERS",
                       "LAMINA_LOG_LEVEL", "_LAMINA_ROOTLESS_UID")
#: seconds a daemon may take to answer (each wait for bytes); a daemon that takes longer is
#: left, and the command runs in-process (it only reads: running it twice changes nothing)
ANSWER_TIMEOUT = 30.0
_HEAD_LIMIT = 65536
#: the engine cache's directory under the exec root (:mod:`lamina.cli.enginecache`)
CACHE_DIRECTORY = "engine-cache"
_CACHE_NAMESPACES = ("mnt", "net", "pid", "user")
#: the variables that make a cache's interpreter or output differ (the engine's own are
#: :data:`_ENGINE_ENVIRONMENT`, with which nothing is forwarded)
_IDENTITY_ENVIRONMENT = ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONPATH",
                         "PYTHONHOME")
_SOCKET_PATH_LIMIT = 108  # sun_path, with its terminating NUL
_KEY_LENGTH = 16  # hexadecimal digits of the identity's sha256 in a cache's socket name


def run() -> None:
    """The ``lamina`` program: :func:`forward`, else :func:`lamina.cli.main.run` (and then,
    for a forwarded command that no daemon or cache took, a start of the engine cache)."""
    try:
        code, cache = _forward(sys.argv[1:], os.environ, DEFAULT_SOCKET)
    except KeyboardInterrupt:  # as lamina.cli.main: the message, EXIT_INTERRUPTED
        os.write(2, b"interrupted\n")
        os._exit(EXIT_INTERRUPTED)
    if code is not None:
        os._exit(code)  # printed with os.write: nothing is buffered
    if cache is not None:
        import atexit  # lamina.cli.main.run runs the exit functions, then exits

        atexit.register(_start_cache, cache, os.environ)
    from lamina.cli.main import run as run_in_process

    run_in_process()


def _start_cache(socket_path: str, environ: Mapping[str, str]) -> None:
    if os.geteuid() != 0:
        return  # an unprivileged user's command that did not join its rootless namespaces
    from lamina.cli.enginecache import start

    start(socket_path, environ)


def forward(argv: Sequence[str], environ: Mapping[str, str], *,
            default_socket: str = DEFAULT_SOCKET) -> int | None:
    """Run ``argv`` in a daemon, or in the engine cache, and print what it printed; its exit
    code, or None when the command is to run in-process (not forwarded, or nobody took it)."""
    return _forward(argv, environ, default_socket)[0]


def _forward(argv: Sequence[str], environ: Mapping[str, str], default_socket: str) -> tuple[int | None, str | None]:
    """:func:`forward`'s exit code, and the engine cache's socket when the command is one the
    cache would take but nobody took it (a cache is to be started there)."""
    host, words = _split(argv)
    if words is None or environ.get("LAMINA_FORWARD") == "0":
        return None, None
    if host is None:
        host = environ.get("LAMINA_HOST") or environ.get("DOCKER_HOST")
    if not is_forwarded(words) or "-h" in words or "--help" in words:
        return (None, None) if host else _fork(words, environ)
    headers: list[tuple[str, str]] = []
    cache = None
    if host:
        if not host.startswith("unix://") or len(host) == len("unix://"):
            return None, None
        paths = [host[len("unix://"):]]
    else:
        engine = _default_engine(environ)
        if engine is None:
            return None, None
        data_root, exec_root = engine
        headers.append((DATA_ROOT_HEADER, data_root))
        headers.append((EXEC_ROOT_HEADER, exec_root))
        cache = cache_socket(data_root, exec_root, environ)
        # an unprivileged user's: its cache (a rootless daemon is reached with -H)
        paths = [default_socket] if os.geteuid() == 0 else []
        if cache is not None:
            paths.append(cache)
    columns = terminal_columns(environ)
    if columns:
        headers.append((COLUMNS_HEADER, str(columns)))
    if environ.get("TZ"):
        headers.append((TIME_ZONE_HEADER, environ["TZ"]))  # local times print in it
    if any(not value.isascii() or not value.isprintable() for _, value in headers):
        return None, None  # a path HTTP cannot carry as it is: leave it to the full client
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    body = b"\0".join(os.fsencode(word) for word in words)
    request = (b"POST " + COMMAND_PATH.encode() + b" HTTP/1.1\r\nHost: lamina\r\nConnection: close\r\n"
               + head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    for path in paths:
        answer = _exchange(path, request)
        if answer is not None:
            break
    else:
        return None, cache
    code, frames = answer
    try:
        _print(frames)
    except BrokenPipeError:
        return EXIT_FAILURE, None  # as lamina.cli.main on a closed stdout
    return code, None


def _default_engine(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``(data_root, exec_root)`` of the engine an in-process command builds, when it is one a
    daemon or the engine cache may stand for: changed by no variable of
    :data:`_ENGINE_ENVIRONMENT`; else None.  For an unprivileged user, the rootless engine's
    roots (:func:`lamina.defaults.rootless_data_root`, :func:`~lamina.defaults.rootless_exec_root`),
    or None when they depend on
    what this module does not read (``HOME`` unset: the password database) or are not valid (an
    ``XDG_RUNTIME_DIR`` unset or relative: the in-process command names the problem)."""
    if any(environ.get(name) for name in _ENGINE_ENVIRONMENT):
        return None
    data_root, exec_root = environ.get("LAMINA_DATA_ROOT"), environ.get("LAMINA_EXEC_ROOT")
    if os.geteuid() != 0:
        exec_root = exec_root or rootless_exec_root(environ)
        data_root = data_root or rootless_data_root(environ)
        if not exec_root or not data_root:
            return None
    return (os.path.abspath(data_root or DEFAULT_DATA_ROOT), os.path.abspath(exec_root or DEFAULT_EXEC_ROOT))


def _fork(words: list[str], environ: Mapping[str, str]) -> tuple[int | None, str | None]:
    """A command that is not a read: run in a worker of the engine cache's fork server
    (:mod:`lamina.cli.forkserver`) when one serves this identity; else in-process, and the
    cache to start at exit."""
    from lamina.cli.forkserver import NOT_FORKED, run_forked

    engine = _default_engine(environ)
    if engine is None or words[0] in NOT_FORKED:
        return None, None
    cache = cache_socket(*engine, environ)
    if cache is None:
        return None, None
    code = run_forked(fork_socket(cache), words, environ)
    return code, (cache if code is None else None)


def cache_socket(data_root: str, exec_root: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The socket of the engine cache (:mod:`lamina.cli.enginecache`) that serves this
    program's identity: the interpreter (its binary and its prefix: a virtual environment is
    another one), the code tree, ``data_root``, ``exec_root``, the variables of ``environ``
    that the interpreter or the output depend on (:data:`_IDENTITY_ENVIRONMENT`: ``TZ``, local
    times print in it; the locale, the text encoding, the import path), this process's
    mount, network, pid and user namespaces, its effective uid and, for an unprivileged user,
    its cgroups (``/proc/self/cgroup``: a rootless engine finds its delegated cgroup from
    there); None when the path, or its fork server's (:func:`fork_socket`), is too long for a
    unix socket address (no cache then)."""
    environ = environ or {}
    identity = [*interpreter_identity(), data_root, exec_root,
                *(f"{name}={environ.get(name, '')}" for name in _IDENTITY_ENVIRONMENT)]
    for namespace in _CACHE_NAMESPACES:
        try:
            identity.append(os.readlink(f"/proc/self/ns/{namespace}"))
        except OSError:
            identity.append("")
    euid = os.geteuid()
    identity.append(str(euid))
    if euid != 0:  # a rootless engine's cgroups are found from the cgroup its command starts in
        try:
            with open("/proc/self/cgroup", "rb") as handle:
                identity.append(handle.read().decode("utf-8", "surrogateescape"))
        except OSError:
            identity.append("")
    from lamina.builtinhash import builtin_sha256  # no OpenSSL load (hashlib's costs ~3 ms)

    key = builtin_sha256()("\0".join(identity).encode("utf-8", "surrogateescape")).hexdigest()[:_KEY_LENGTH]
    path = os.path.join(exec_root, CACHE_DIRECTORY, f"{key}.sock")
    return path if len(os.fsencode(fork_socket(path))) < _SOCKET_PATH_LIMIT else None


def interpreter_identity() -> list[str]:
    """The first fields of a cache's identity: this interpreter's binary (its real path), its
    prefix (a virtual environment is another interpreter) and the code tree lamina runs from."""
    return [os.path.realpath(sys.executable), sys.prefix,
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]


def fork_socket(cache_socket: str) -> str:
    """The socket of the engine cache's fork server (:mod:`lamina.cli.forkserver`) beside the
    cache's ``<key>.sock``: ``<key>.fork.sock``."""
    return cache_socket[:-len(".sock")] + ".fork.sock"


def is_forwarded(words: Sequence[str]) -> bool:
    """Whether the command ``words`` name (what follows the global options) is forwarded."""
    return bool(words) and (tuple(words[:2]) if words[0] in _GROUPS else (words[0],)) in FORWARDED


def _split(argv: Sequence[str]) -> tuple[str | None, list[str] | None]:
    """``(host, words)``: the ``-H`` value and the words after the global options; words is
    None when a global option other than ``-H`` is given (or no command)."""
    host = None
    index = 0
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "-":
        token = argv[index]
        if token in ("-H", "--host") and index + 1 < len(argv):
            host = argv[index + 1]
            index += 2
        elif token.startswith("--host="):
            host = token[len("--host="):]
            index += 1
        else:
            return None, None
    words = list(argv[index:])
    return host, (words or None)


def terminal_columns(environ: Mapping[str, str]) -> int:
    """The width of the terminal this program prints on, as ``shutil.get_terminal_size()``
    finds it (``COLUMNS``, else the size of stdout's terminal); 0 when there is none."""
    value = environ.get("COLUMNS", "")
    if value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return os.get_terminal_size(1).columns
    except OSError:
        return 0


def _exchange(path: str, request: bytes) -> tuple[int, list[tuple[int, bytes]]] | None:
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(ANSWER_TIMEOUT)
    try:
        try:
            sock.connect(path)
            sock.sendall(request)
        except OSError:
            return None  # no daemon there (or it went away): in-process
        received = bytearray()
        end = -1
        while end < 0:
            piece = sock.recv(65536)
            if not piece or len(received) > _HEAD_LIMIT:
                return None
            received += piece
            end = received.find(b"\r\n\r\n")
        head = bytes(received[:end]).split(b"\r\n")
        status = head[0].split(b" ", 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
            return None
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        length = fields.get(b"content-length", b"")
        code = fields.get(EXIT_CODE_HEADER.lower().encode(), b"")
        if not length.isdigit() or not code.isdigit():
            return None
        body = received[end + 4:]
        while len(body) < int(length):
            piece = sock.recv(65536)
            if not piece:
                return None  # cut short: nothing is printed yet, so in-process
            body += piece
        frames = _frames(bytes(body[:int(length)]))
        return None if frames is None else (int(code), frames)
    except OSError:
        return None
    finally:
        sock.close()


def _frames(body: bytes) -> list[tuple[int, bytes]] | None:
    """The stdout and stderr frames of ``body``; None when it is not whole frames of those two."""
    from lamina import errdefs, stdcopy  # only once a daemon answered

    try:
        frames = list(stdcopy.demultiplex(body))
    except errdefs.InvalidArgument:
        return None
    return frames if all(stream in (stdcopy.STDOUT, stdcopy.STDERR) for stream, _ in frames) else None


def _print(frames: list[tuple[int, bytes]]) -> None:
    for stream, payload in frames:
        view = memoryview(payload)
        while view:
            view = view[os.write(stream, view):]


if __name__ == "__main__":
    run()
