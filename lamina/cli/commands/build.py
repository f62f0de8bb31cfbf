"""``lamina build [OPTIONS] PATH | -``: build an image from a Dockerfile with the classic builder.

The context goes to the engine as ``POST /build`` wants it: a tar of PATH (what
``.dockerignore`` excludes is left out, except the Dockerfile and ``.dockerignore``
themselves; owners are sent as 0:0 like the docker CLI does), produced by a thread into a pipe
so that the context is never held in memory.  A Dockerfile outside the context (``-f``) or on
stdin (``-f -``) is added to the tar under a random name that ``.dockerignore`` (in the tar)
then names, as the docker CLI does, so that COPY and ADD do not see it.  ``-`` as PATH reads the context
tar from stdin, or a bare Dockerfile (then the context is empty).

With the in-process engine (no ``-H``) PATH is not tarred at all: the engine reads it in place
(``POST /build?laminacontext=PATH``), which reads only the files COPY and ADD use.  Setting
``LAMINA_BUILD_SEND_CONTEXT=1`` sends the tar anyway (for comparisons).

Output is the engine's stream, printed as the classic ``docker build`` prints it (``Step 2/5 :
RUN make``, `` ---> Running in <id>``, ``Successfully built <id>``...); ``-q`` prints only the
image id; ``--iidfile`` writes it to a file.  ``--pull`` pulls every FROM image (a missing
one is always pulled) with the credentials of ``~/.docker/config.json``, sent as the docker
CLI sends them (``X-Registry-Config``); the pull's status lines are printed between the steps.  A failed build prints the engine's message on
stderr and exits 1.
"""

from __future__ import annotations

import argparse
import os
import threading

from lamina.cli.context import Context
from lamina.cli.dockerconfig import DockerConfig
from lamina.cli.errors import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    CommandError,
    UsageError,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["SEND_CONTEXT_ENVIRONMENT", "configure", "context_tar", "run"]

SEND_CONTEXT_ENVIRONMENT = "LAMINA_BUILD_SEND_CONTEXT"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH | -", help="the build context directory, or '-' for STDIN")
    parser.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                        help="name and optionally a tag (several allowed)")
    parser.add_argument("-f", "--file", default="", metavar="FILE",
                        help="name of the Dockerfile (default: PATH/Dockerfile; '-' reads it from STDIN)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set a build-time variable (KEY alone takes it from the environment)")
    parser.add_argument("--target", default="", metavar="STAGE", help="build the stages up to STAGE")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="set metadata on the image")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    parser.add_argument("--iidfile", default="", metavar="FILE", help="write the image id to FILE")
    parser.add_argument("--rm", action="store_true", default=True,
                        help="remove each intermediate container after its step, also when the step fails "
                             "(default true; --rm=false keeps them)")
    parser.add_argument("--force-rm", action="store_true", help="always remove intermediate containers")
    parser.add_argument("--network", default="", metavar="MODE",
                        help="network of the RUN steps: default, none, host or a network's name")
    parser.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                        help="add a custom host-to-IP mapping (host:ip) to the RUN steps' /etc/hosts")
    parser.add_argument("--cache-from", action="append", default=[], metavar="IMAGE",
                        help="images to consider as cache sources")
    parser.add_argument("--no-cache", action="store_true", help="do not use the cache")
    parser.add_argument("--pull", action="store_true",
                        help="always pull the FROM images (without it only a missing one is pulled)")
    parser.add_argument("--platform", default="", metavar="PLATFORM", help="the build's platform (linux/<host arch>)")


def _build_args(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for value in values:
        key, equals, text = value.partition("=")
        out[key] = text if equals else os.environ.get(key)
    return out


def _extra_host(value: str) -> str:
    """An ``--add-host`` value (``host:ip`` or ``host=ip``) in the API's ``host:ip`` form, checked
    as the docker CLI checks it."""
    import ipaddress

    name, separator, address = value.partition("=")
    if not separator:
        name, separator, address = value.partition(":")
    if not separator or not name or ":" in name:
        raise UsageError(f'invalid argument "{value}" for "--add-host" flag: bad format for add-host: "{value}"')
    if len(address) > 2 and address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if address != "host-gateway":
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise UsageError(f'invalid argument "{value}" for "--add-host" flag: '
                             f'invalid IP address in add-host: "{address}"') from None
    return f"{name}:{address}"


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, _, text = value.partition("=")
        out[key] = text
    return out


# -- the context tar --------------------------------------------------------------------------


class _ContextWriter:
    """Writes the context tar of ``directory`` (see the module docstring) into a pipe."""

    def __init__(self, directory: str, extra: tuple[str, bytes] | None) -> None:
        from lamina.build.dockerignore import DockerIgnore

        self.directory = directory
        self.extra = extra
        try:
            with open(os.path.join(directory, ".dockerignore"), "rb") as handle:
                self.ignore = DockerIgnore.from_text(handle.read())
        except (FileNotFoundError, IsADirectoryError):
            self.ignore = DockerIgnore()
        self.errors: list[BaseException] = []

    def _add(self, writer: Any, relative: str, info: os.stat_result) -> None:
        import stat

        from lamina.archive import EntryType, TarEntry

        full = os.path.join(self.directory, relative)
        common: dict[str, Any] = {"name": relative, "mode": info.st_mode & 0o7777, "uid": 0, "gid": 0,
                                  "mtime_ns": info.st_mtime_ns}
        if stat.S_ISDIR(info.st_mode):
            writer.add(TarEntry(type=EntryType.DIRECTORY, **common))
        elif stat.S_ISREG(info.st_mode):
            xattrs = {}
            try:
                xattrs["security.capability"] = os.getxattr(full, "security.capability", follow_symlinks=False)
            except OSError:
                pass
            with open(full, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                writer.add(TarEntry(type=EntryType.REGULAR, size=size, xattrs=xattrs, **common), handle)
        elif stat.S_ISLNK(info.st_mode):
            writer.add(TarEntry(type=EntryType.SYMLINK, linkname=os.readlink(full), **common))
        elif stat.S_ISFIFO(info.st_mode):
            writer.add(TarEntry(type=EntryType.FIFO, **common))
        # sockets and devices are not sent, as the docker CLI's walk leaves them out

    def _add_ignore_file(self, writer: Any, info: os.stat_result | None) -> None:
        """``.dockerignore`` with the added Dockerfile's name appended, as the docker CLI does,
        so that the engine hides that file from COPY and ADD."""
        from lamina.archive import EntryType, TarEntry

        assert self.extra is not None
        try:
            with open(os.path.join(self.directory, ".dockerignore"), "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            content = b""
        content += b"\n" + self.extra[0].encode()
        writer.add(TarEntry(name=".dockerignore", type=EntryType.REGULAR, size=len(content),
                            mode=info.st_mode & 0o7777 if info is not None else 0o644,
                            mtime_ns=info.st_mtime_ns if info is not None else 0), [content])

    def produce(self, write_fd: int, always: set[str]) -> None:
        from lamina.archive import TarWriter

        try:
            with open(write_fd, "wb", buffering=1 << 20) as out:
                writer = TarWriter(out.write)
                seen: set[str] = set()
                if self.extra is not None:
                    try:
                        info: os.stat_result | None = os.lstat(os.path.join(self.directory, ".dockerignore"))
                    except FileNotFoundError:
                        info = None
                    self._add_ignore_file(writer, info)
                    seen.add(".dockerignore")
                for relative, info in self.ignore.walk(self.directory):
                    if relative in seen:
                        continue
                    seen.add(relative)
                    self._add(writer, relative, info)
                for name in sorted(always - seen):
                    try:
                        info = os.lstat(os.path.join(self.directory, name))
                    except FileNotFoundError:
                        continue
                    self._add(writer, name, info)
                if self.extra is not None:
                    name, content = self.extra
                    writer.add_file(name, len(content), [content], mode=0o600)
                writer.close()
        except BrokenPipeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the caller once the build stream ended
            self.errors.append(exc)


def context_tar(directory: str, *, dockerfile_inside: str = "",
                extra: tuple[str, bytes] | None = None) -> tuple[BinaryIO, list[BaseException]]:
    """A readable stream of the context tar of ``directory``, written by a thread; the list
    receives the thread's error if it fails (the stream then ends early).  The Dockerfile at
    ``dockerfile_inside`` and ``.dockerignore`` are always sent; ``extra`` is (name, content)
    of a Dockerfile that is not in the directory."""
    writer = _ContextWriter(directory, extra)
    read_fd, write_fd = os.pipe()
    always = {".dockerignore"} | ({dockerfile_inside} if dockerfile_inside else set())
    threading.Thread(target=writer.produce, args=(write_fd, always), name="lamina-build-context",
                     daemon=True).start()
    return open(read_fd, "rb"), writer.errors


def _stdin_context(stream: BinaryIO) -> BinaryIO:
    """``build -``: the stdin stream when it holds a context tar, else a tar of the Dockerfile
    it holds."""
    import io

    from lamina.archive import TarWriter
    from lamina.build.context import looks_like_archive, read_head

    prefix = read_head(stream)
    if looks_like_archive(prefix):
        return _Prefixed(prefix, stream)  # type: ignore[return-value]
    content = prefix + stream.read()
    out = io.BytesIO()
    writer = TarWriter(out.write)
    writer.add_file("Dockerfile", len(content), [content], mode=0o600)
    writer.close()
    out.seek(0)
    return out


class _Prefixed:
    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        self.prefix = prefix
        self.source = source

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            if size < 0:
                data, self.prefix = self.prefix + self.source.read(), b""
                return data
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        return self.source.read(size)

    def close(self) -> None:
        pass


# -- the command --------------------------------------------------------------------------------


def _in_process(context: Context) -> bool:
    from lamina.client.transport import InProcessTransport

    return isinstance(context.transport, InProcessTransport) and not os.environ.get(SEND_CONTEXT_ENVIRONMENT)


def run(args: argparse.Namespace, context: Context) -> int:
    path = args.path
    if "://" in path or path.startswith("git@"):
        raise CommandError(f"unable to prepare context: remote contexts are not supported ({path}); "
                           "clone or download it and build from the directory")
    if path == "-" and args.file == "-":
        raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
    if args.iidfile:
        try:
            os.unlink(args.iidfile)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CommandError(f"Removing image ID file: {exc.strerror}") from exc
    common: dict[str, Any] = {"tags": args.tag, "build_args": _build_args(args.build_arg),
                              "target": args.target, "labels": _labels(args.label), "no_cache": args.no_cache,
                              "quiet": args.quiet, "remove": args.rm, "force_remove": args.force_rm,
                              "network_mode": args.network, "platform": args.platform, "pull": args.pull,
                              "extra_hosts": [_extra_host(value) for value in args.add_host],
                              "cache_from": args.cache_from,
                              "registry_config": DockerConfig().registry_config()}
    errors: list[BaseException] = []
    body: BinaryIO | None = None
    if path == "-":
        body = _stdin_context(context.stdin.buffer)  # type: ignore[attr-defined]
        common["dockerfile"] = args.file
    else:
        directory = os.path.abspath(path)
        if not os.path.isdir(directory):
            if os.path.exists(directory):
                raise CommandError(f"unable to prepare context: context must be a directory: {path}")
            raise CommandError(f'unable to prepare context: path "{path}" not found', EXIT_NOT_FOUND)
        dockerfile_content: bytes | None = None
        if args.file == "-":
            dockerfile_content = context.stdin.buffer.read()  # type: ignore[attr-defined]
            dockerfile_path = ""
        else:
            dockerfile_path = os.path.abspath(args.file) if args.file else _default_dockerfile(directory)
            if not os.path.isfile(dockerfile_path):
                raise CommandError(f"Cannot locate specified Dockerfile: {args.file or 'Dockerfile'}",
                                   EXIT_NOT_FOUND)
        if dockerfile_content is None and _in_process(context):
            common["context_directory"] = directory
            common["dockerfile"] = dockerfile_path
        else:
            relative = os.path.relpath(dockerfile_path, directory) if dockerfile_path else ""
            if dockerfile_path and not relative.startswith(".." + os.sep) and relative != "..":
                body, errors = context_tar(directory, dockerfile_inside=relative)
                common["dockerfile"] = relative
            else:
                if dockerfile_content is None:
                    with open(dockerfile_path, "rb") as handle:
                        dockerfile_content = handle.read()
                name = f".dockerfile.{os.urandom(10).hex()}"
                body, errors = context_tar(directory, extra=(name, dockerfile_content))
                common["dockerfile"] = name
    try:
        return _show(context.client.build(body, **common), args, context, errors)
    finally:
        if body is not None:
            body.close()


def _default_dockerfile(directory: str) -> str:
    path = os.path.join(directory, "Dockerfile")
    if not os.path.lexists(path) and os.path.lexists(os.path.join(directory, "dockerfile")):
        return os.path.join(directory, "dockerfile")
    return path


def _pull_status(message: dict[str, Any]) -> str | None:
    """A base image's pull message as a line (``<id>: <status>``, as ``docker build`` prints
    it without a terminal); None for the byte counts of a layer's download."""
    status = message.get("status")
    if not isinstance(status, str) or (message.get("progressDetail") or {}).get("current") is not None:
        return None
    identifier = message.get("id")
    return f"{identifier}: {status}\n" if identifier else status + "\n"


def _show(messages: Any, args: argparse.Namespace, context: Context, errors: list[BaseException]) -> int:
    out, err = context.out, context.err
    image_id = ""
    quiet_output = []
    for message in messages:
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail")
            text = detail.get("message") if isinstance(detail, dict) and detail.get("message") else message.get("error")
            out.flush()
            if errors:
                text = f"{text} (sending the build context failed: {errors[0]})"
            err.write(f"{text}\n")
            err.flush()
            return EXIT_FAILURE
        aux = message.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            image_id = aux["ID"]
            continue
        stream = message.get("stream")
        if stream is None:
            stream = _pull_status(message)
            if stream is None:
                continue
        if args.quiet:
            quiet_output.append(str(stream))
            continue
        out.write(str(stream))
        out.flush()
    if args.quiet:
        text = "".join(quiet_output)
        image_id = image_id or text.strip()
        out.write(text)
        out.flush()
    if errors:
        raise CommandError(f"sending the build context failed: {errors[0]}")
    if args.iidfile:
        if not image_id:
            raise CommandError("Server did not provide an image ID. Cannot write " + args.iidfile)
        try:
            with open(args.iidfile, "w", encoding="ascii") as handle:
                handle.write(image_id)
        except OSError as exc:
            raise CommandError(f"Cannot write image ID file {args.iidfile}: {exc.strerror}") from exc
    return EXIT_OK
