"""CLI fixtures: ``lamina`` runs ``main()`` in-process against the services test double (the
in-process transport's service factory is replaced), with captured binary-capable stdio."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from lamina.cli.main import main
from lamina.client import transport as transport_module

from api.container_service_double import ContainerDoubleServices


class Stream(io.TextIOWrapper):
    """A text stream over bytes (``.buffer`` works) that can pretend to be a terminal."""

    def __init__(self, data: bytes = b"", terminal: bool = False) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", newline="")
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal

    def bytes(self) -> bytes:
        self.flush()
        return self.buffer.getvalue()  # type: ignore[attr-defined]


@dataclass
class Result:
    code: int
    out: str
    err: str
    out_bytes: bytes


@pytest.fixture
def services(monkeypatch, tmp_path) -> ContainerDoubleServices:
    double = ContainerDoubleServices(str(tmp_path / "containers"))
    monkeypatch.setattr(transport_module, "build_default_services", lambda config: double)
    for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER", "LAMINA_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAMINA_DATA_ROOT", str(tmp_path / "data"))
    return double


@pytest.fixture
def lamina(services, monkeypatch):
    def run(*argv: str, stdin: bytes = b"", stdin_terminal: bool = False,
            stdout_terminal: bool = False) -> Result:
        stdin_stream = Stream(stdin, terminal=stdin_terminal)
        stdout_stream = Stream(terminal=stdout_terminal)
        stderr_stream = Stream()
        monkeypatch.setattr("sys.stdin", stdin_stream)
        monkeypatch.setattr("sys.stdout", stdout_stream)
        monkeypatch.setattr("sys.stderr", stderr_stream)
        code = main(list(argv))
        out = stdout_stream.bytes()
        return Result(code, out.decode("utf-8", "replace"), stderr_stream.bytes().decode(), out)

    return run
