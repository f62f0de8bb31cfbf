"""Detach keys through the ``lamina`` CLI on a real pty (a separate process, the in-process
engine, real monitors): Ctrl-P Ctrl-Q, ``--detach-keys`` and ``detachKeys`` of the docker
config file leave ``run -it``, ``start -ai``, ``attach`` and ``exec -it`` with exit code 0 and
nothing printed, the container (or exec) keeps running, a partial sequence followed by another
key reaches the container, unknown keys are refused before anything is created."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

import pytest

from cli.terminal import Terminal
from cli.test_containers_e2e import Lamina, loaded_engine

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def lamina() -> Iterator[Lamina]:
    with loaded_engine("lde-") as runner:
        yield runner


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "lamina.cli.main", *argv]


def running(lamina: Lamina, name: str) -> bool:
    return lamina.ok("inspect", "--format", "{{.State.Running}}", name).strip() == "true"


def test_run_it_detaches_with_ctrl_p_ctrl_q_and_passes_a_broken_sequence(lamina) -> None:
    with Terminal(cli("run", "-it", "--rm", "--name", "typed", "busybox", "cat"), lamina.environment) as terminal:
        terminal.send(b"first\r")
        terminal.read_until(b"first\r\nfirst\r\n")       # the tty's echo, then cat's copy
        terminal.send(b"\x10")
        terminal.send(b"z\r")                             # Ctrl-P then another key: both reach cat
        terminal.read_until(b"\x10z\r\n")
        before = len(terminal.output)
        terminal.send(b"\x10\x11")
        assert terminal.wait() == 0
        assert terminal.output[before:] == b""           # nothing extra printed
    assert running(lamina, "typed")                      # --rm: it is removed at its exit, not now
    lamina.ok("rm", "-f", "typed")


def test_custom_keys_detach_from_attach_and_start_ai(lamina) -> None:
    lamina.ok("create", "-it", "--name", "again", "busybox", "cat")
    with Terminal(cli("start", "-ai", "--detach-keys", "ctrl-a,x", "again"), lamina.environment) as terminal:
        terminal.send(b"hello\r")
        terminal.read_until(b"hello\r\nhello\r\n")
        terminal.send(b"\x01y\x10\r")            # a broken sequence and others' keys: passed on
        terminal.read_until(b"\x01y\x10\r\n")
        terminal.send(b"\x01x")
        assert terminal.wait() == 0
    assert running(lamina, "again")

    config = os.path.join(lamina.root, "docker-config")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "config.json"), "w") as handle:
        json.dump({"detachKeys": "ctrl-e,e"}, handle)
    environment = {**lamina.environment, "DOCKER_CONFIG": config}
    with Terminal(cli("attach", "again"), environment) as terminal:
        terminal.send(b"more\r")
        terminal.read_until(b"more\r\n")
        terminal.send(b"\x05e")
        assert terminal.wait() == 0
    assert running(lamina, "again")
    events = lamina.ok("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "container=again",
                       "--filter", "event=detach", "--format", "{{.Action}}")
    assert events.split() == ["detach", "detach"]
    lamina.ok("rm", "-f", "again")


def test_exec_it_detaches_and_the_exec_keeps_running(lamina) -> None:
    lamina.ok("run", "-d", "--name", "host", "busybox", "sleep", "300")
    with Terminal(cli("exec", "-it", "host", "sh", "-c", "echo ready; exec cat"), lamina.environment) as terminal:
        terminal.read_until(b"ready")
        terminal.send(b"\x10\x11")
        assert terminal.wait() == 0
    processes = lamina.ok("top", "host")
    assert " cat" in processes or "\ncat" in processes or "cat\n" in processes
    lamina.ok("rm", "-f", "host")


@pytest.mark.parametrize("argv", [["run", "-it", "--detach-keys", "ctrl-1", "busybox", "cat"],
                                  ["run", "-it", "--detach-keys", "alt-x", "busybox", "cat"]],
                         ids=["unknown control key", "unknown key name"])
def test_unknown_keys_are_refused_before_a_container_is_created(lamina, argv) -> None:
    result = lamina(*argv)
    assert result.code == 125 and "Invalid detach keys" in result.err
    assert lamina.ok("ps", "-aq") == ""


def test_a_tty_with_stdin_needs_a_terminal(lamina) -> None:
    """A TTY's input is not closed by the client's end of input (Docker's rule), so, as the
    docker CLI does, ``-it`` on piped input is refused before anything is created."""
    result = lamina("run", "--rm", "-it", "busybox", "cat", stdin=b"piped\n")
    assert (result.code, result.err.strip()) == (1, "the input device is not a TTY")
    assert lamina.ok("ps", "-aq") == ""
    lamina.ok("run", "-d", "--name", "target", "busybox", "sleep", "300")
    result = lamina("exec", "-it", "target", "cat", stdin=b"piped\n")
    assert (result.code, result.err.strip()) == (1, "the input device is not a TTY")
    assert lamina.ok("exec", "-i", "target", "cat", stdin=b"piped\n") == "piped\n"
    lamina.ok("rm", "-f", "target")
