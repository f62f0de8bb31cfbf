"""Build the compiled front of the ``lamina`` program (``lamina/cli/front.c``).

The compiled front is the Python front's client of the engine cache's fork server without an
interpreter's start (see ``front.c``).  It must choose the fork server by the identity the
Python front computes (:func:`lamina.cli.front.cache_socket`) and speak
:mod:`lamina.cli.forkserver`'s exchange, so every value the two share comes from the Python
modules, which stay their one home: this module writes them into a ``front_config.h`` (C
string and array literals) and compiles ``front.c`` with it.  The interpreter, prefix and code
tree of the identity are this interpreter's: the binary is built for the virtual environment
that builds it, and runs its Python front (``PYTHON -P -c ...``) for whatever it does not
handle itself.

``python -m lamina.cli.frontbuild OUTPUT`` (``make`` installs it as the virtual environment's
``lamina``, over pip's entry script, which the Python front does not need).  The compiler is
``$CC`` or ``cc``.  The binary is written beside ``OUTPUT`` and renamed over it: a ``lamina``
running meanwhile keeps its file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from lamina import errdefs
from lamina.cli import forkserver, front
from lamina.defaults import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT

__all__ = ["SOURCE", "build", "config_header"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "front.c")
#: the Python front the compiled one runs: front.run, as pip's entry script calls it
PYTHON_FRONT = "from lamina.cli.front import run; run()"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")


def _literal(value: str) -> str:
    """``value`` (a path, a name: encoded as the file system encodes it) as a C string literal."""
    escaped = "".join(chr(byte) if 0x20 <= byte < 0x7f and chr(byte) not in '"\\?' else f"\\{byte:03o}"
                      for byte in os.fsencode(value))
    return f'"{escaped}"'


def _strings(values: Sequence[str]) -> str:
    """``values`` in their order as a NULL-terminated C array of strings."""
    return "{" + ", ".join([*(_literal(value) for value in values), "NULL"]) + "}"


def config_header() -> str:
    """``front_config.h``: this interpreter's identity and the constants ``front.c`` shares with
    :mod:`lamina.cli.front` and :mod:`lamina.cli.forkserver`."""
    interpreter, prefix, code_tree = front.interpreter_identity()
    lines = [
        "/* written by lamina.cli.frontbuild: the values lamina/cli/front.c shares with Python */",
        f"static const char PYTHON[] = {_literal(sys.executable)};",
        f"static const char PYTHON_FRONT[] = {_literal(PYTHON_FRONT)};",
        f"static const char INTERPRETER[] = {_literal(interpreter)};",
        f"static const char PREFIX[] = {_literal(prefix)};",
        f"static const char CODE_TREE[] = {_literal(code_tree)};",
        f"static const char DEFAULT_DATA_ROOT[] = {_literal(DEFAULT_DATA_ROOT)};",
        f"static const char DEFAULT_EXEC_ROOT[] = {_literal(DEFAULT_EXEC_ROOT)};",
        f"static const char CACHE_DIRECTORY[] = {_literal(front.CACHE_DIRECTORY)};",
        f"static const char REQUEST_VERSION[] = {_literal(forkserver._VERSION.decode())};",
        f"static const char *const ENGINE_ENVIRONMENT[] = {_strings(front._ENGINE_ENVIRONMENT)};",
        f"static const char *const IDENTITY_ENVIRONMENT[] = {_strings(front._IDENTITY_ENVIRONMENT)};",
        f"static const char *const CACHE_NAMESPACES[] = {_strings(front._CACHE_NAMESPACES)};",
        f"static const char *const NOT_FORKED[] = {_strings(sorted(forkserver.NOT_FORKED))};",
        "static const int RELAYED[] = {" + ", ".join([*forkserver.RELAYED, "0"]) + "};",
        f"enum {{ KEY_LENGTH = {front._KEY_LENGTH}, SOCKET_PATH_LIMIT = {front._SOCKET_PATH_LIMIT} }};",
    ]
    return "\n".join(lines) + "\n"


def build(output: str, *, compiler: str | None = None) -> None:
    """Compile the front into ``output`` (replaced whole, by a rename)."""
    compiler = compiler or os.environ.get("CC") or "cc"
    output = os.path.abspath(output)
    with tempfile.TemporaryDirectory(prefix="lamina-front-") as directory:
        with open(os.path.join(directory, "front_config.h"), "w", encoding="ascii") as header:
            header.write(config_header())
        partial = os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.{os.getpid()}")
        try:
            result = subprocess.run([compiler, *CFLAGS, "-I", directory, "-o", partial, SOURCE],
                                    capture_output=True, text=True)
        except OSError as exc:
            raise errdefs.FailedPrecondition(f"cannot run the C compiler {compiler!r}: {exc.strerror}") from exc
        if result.returncode != 0:
            _remove(partial)
            raise errdefs.System(f"{compiler} could not compile {SOURCE}:\n{result.stderr}")
        if result.stderr:
            _remove(partial)
            raise errdefs.System(f"{compiler} warned about {SOURCE}:\n{result.stderr}")
        try:
            os.chmod(partial, 0o755)
            os.rename(partial, output)
        except OSError as exc:
            _remove(partial)
            raise errdefs.System(f"cannot install the compiled front as {output}: {exc.strerror}") from exc


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lamina.cli.frontbuild OUTPUT", file=sys.stderr)
        return 2
    try:
        build(argv[0])
    except errdefs.LaminaError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
