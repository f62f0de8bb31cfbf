"""Bad command lines through ``main()`` in-process, on a real engine: every one ends in a
message and an exit code that says what kind of failure it was, never in an internal error.

A table of the cases found by hand (each with its exit code), then hypothesis over the
options of the commands that neither start containers nor reach a registry, with values that
broke parsers before: bytes that are not UTF-8 (a real argv keeps them as lone surrogates),
template syntax, huge numbers, path traversal, empty strings."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.cli.errors import EXIT_BAD_REQUEST, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from lamina.cli.main import COMMANDS, build_command_parser, main
from lamina.config import EngineConfig
from lamina.services.compose import build_services

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
NOT_UTF8 = os.fsdecode(b"\xff")


class _Stream(io.TextIOWrapper):
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="surrogateescape", newline="")

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


class Engine:
    """``lamina ARGS...`` in this process, against a data root of its own."""

    def __init__(self, root: str) -> None:
        self.root = root

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        saved = sys.stdin, sys.stdout, sys.stderr
        out, err = _Stream(), _Stream()
        sys.stdin, sys.stdout, sys.stderr = io.TextIOWrapper(io.BytesIO()), out, err
        try:
            code = main(["--data-root", os.path.join(self.root, "data"), *argv])
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
        return code, out.text(), err.text()


@pytest.fixture(scope="module")
def lamina(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad-arguments"))
    saved_environment = {name: os.environ.get(name) for name in
                         ("LAMINA_EXEC_ROOT", "LAMINA_HOST", "DOCKER_HOST", "LAMINA_LOG_LEVEL")}
    saved_directory = os.getcwd()
    os.environ["LAMINA_EXEC_ROOT"] = os.path.join(root, "exec")
    for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_LOG_LEVEL"):
        os.environ.pop(name, None)
    work = os.path.join(root, "work")
    os.mkdir(work)
    os.chdir(work)  # relative output paths (save -o NAME, --cidfile NAME) land here
    engine = Engine(root)
    try:
        # loaded through the services, not main(): main() configures the "lamina" logger, which
        # the per-test fixture of conftest.py restores only around tests
        services = build_services(EngineConfig(data_root=os.path.join(root, "data"),
                                               exec_root=os.path.join(root, "exec")))
        with open(FIXTURE, "rb") as handle:
            services.images.load(handle, progress=lambda message: None)
        yield engine
    finally:
        os.chdir(saved_directory)
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        subprocess.run(["umount", "-R", os.path.join(root, "data")], capture_output=True, timeout=60)


def assert_clear_failure(code: int, err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    assert code != EXIT_OK or not err.startswith("Error"), err


@pytest.mark.parametrize(("argv", "code", "message"), [
    (("save", "-o", "/missing/dir/x.tar", "busybox"), EXIT_NOT_FOUND,
     'invalid output path: directory "/missing/dir" does not exist'),
    (("save", "-o", "/", "busybox"), EXIT_BAD_REQUEST, "is a directory"),
    (("export", "-o", "/missing/dir/x.tar", "nosuch"), EXIT_NOT_FOUND, "invalid output path"),
    (("create", "--name", NOT_UTF8, "busybox"), 125, "Invalid container name (\ufffd)"),
    (("inspect", NOT_UTF8), EXIT_BAD_REQUEST, "invalid reference format"),
    (("container", "inspect", NOT_UTF8), EXIT_NOT_FOUND, "No such container"),
    (("volume", "create", NOT_UTF8), EXIT_BAD_REQUEST, "volume name is too short"),
    (("tag", "busybox", NOT_UTF8), EXIT_BAD_REQUEST, "invalid reference format"),
    (("inspect", "--format", "{{", "busybox"), EXIT_USAGE, "template: :1: unclosed action"),
    (("inspect", "--format", "{{.Id}} {{", "busybox"), EXIT_USAGE, "unclosed action"),
    (("images", "--format", "{{.Nope"), EXIT_USAGE, "unclosed action"),
    (("volume", "create", "v" * 300), EXIT_BAD_REQUEST, "volume name is too long"),
    (("rm", "--force", ""), EXIT_BAD_REQUEST, "container name cannot be empty"),
    (("create", "--platform", "bogus", "busybox"), 125, "unknown operating system or architecture"),
    (("create", "--platform", "windows/arm64", "busybox"), 125, "does not match the specified platform"),
], ids=["save into a missing directory", "save onto a directory", "export into a missing directory",
        "a container name that is not UTF-8", "inspect of a name that is not UTF-8",
        "container inspect of a name that is not UTF-8", "a volume name that is not UTF-8",
        "a tag that is not UTF-8", "an unclosed template action", "an unclosed action after a field",
        "an unclosed action in a list format", "a 300-character volume name", "rm of an empty name", "create for an unknown platform",
        "create for a platform the image is not of"])
def test_bad_command_lines_fail_clearly(lamina, argv, code, message) -> None:
    got, _, err = lamina(*argv)
    assert_clear_failure(got, err)
    assert (got, message in err) == (code, True), err


def test_a_failed_save_leaves_no_file(lamina, tmp_path) -> None:
    target = tmp_path / "missing" / "x.tar"
    code, _, err = lamina("save", "-o", str(target), "busybox")
    assert code == EXIT_NOT_FOUND, err
    assert list(tmp_path.iterdir()) == []


# Commands that start no container, wait for nothing and reach no registry.
FUZZED = ("images", "image inspect", "inspect", "rmi", "tag", "history", "save", "ps", "logs",
          "create", "rm", "rename", "diff", "top", "port", "update", "commit", "export", "stop",
          "kill", "volume create", "volume inspect", "volume ls", "volume rm", "network ls",
          "network inspect", "system df", "info", "version", "image prune", "container prune")

VALUES = st.sampled_from([
    "", " ", NOT_UTF8, "a" + NOT_UTF8 + "b", "{{", "{{.Nope}}", "{{json .}}", "table {{.ID}}",
    "-1", "0", "99999999999999999999", "1e400", "NaN", "../../etc", "UPPER", "v" * 300, ":", "::",
    "busybox", "busybox:latest", "busybox@sha256:zz", "sha256:", "=", "a=b=c", "%", "/", "..",
    "-", "nosuch", "1:2:3:4", "80/udp", "99999:80", "type=tmpfs,tmpfs-size=abc", "label=x",
    "dangling=maybe", "until=yesterday", "SIGNOPE", "always:abc", "on-failure:-3",
])


def _option_words(words: tuple[str, ...]) -> list[str]:
    command = next(command for command in COMMANDS if command.words == words)
    parser, _ = build_command_parser(command)
    return sorted(option for option in parser._option_string_actions
                  if option not in ("-h", "--help", "--cidfile", "--env-file", "--label-file"))


@st.composite
def command_lines(draw) -> list[str]:
    words = tuple(draw(st.sampled_from(FUZZED)).split())
    options = _option_words(words)
    argv = list(words)
    for _ in range(draw(st.integers(0, 3))):
        argv.append(draw(st.sampled_from(options)) if options else draw(VALUES))
        argv.append(draw(VALUES))
    argv.extend(draw(st.lists(VALUES, max_size=2)))
    return argv


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_generated_bad_command_lines_never_fail_internally(lamina, argv) -> None:
    code, _, err = lamina(*argv)
    assert_clear_failure(code, err)
