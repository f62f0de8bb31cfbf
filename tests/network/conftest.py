"""Network fixtures: a store in a temp directory, netavark, unique bridge names and subnets.

Every test gets bridge devices and subnets nobody else uses (``lt<pid><n>``, ``10.<a>.<b>.0/24``
from the pid), and whatever it leaves is torn down: its sandboxes are detached, its bridges
deleted, its netavark rules removed with its networks' bridges (``remove_bridges``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator

import pytest

from lamina.network.netavark import Netavark
from lamina.network.sandbox import HOST_LOCK, Sandboxes
from lamina.network.store import NetworkStore

_COUNTER = itertools.count()


class Names:
    """Unique bridge names and subnets for one test."""

    def __init__(self) -> None:
        self.bridges: list[str] = []
        self.subnets: list[str] = []

    def bridge(self) -> str:
        name = f"lt{os.getpid() % 100000}x{next(_COUNTER)}"
        self.bridges.append(name)
        return name

    def subnet(self) -> str:
        """A /24 of ``10.200.0.0``-``10.249.255.0`` that no other xdist worker of this session
        hands out: each worker has its own 1,600 (a subnet from the pid alone collided: two
        workers' pids a few apart met after a few subnets, and one test saw the other's netavark
        rules as its own leftovers); a session beside another differs by its pid."""
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        number = (worker % 8) * 1600 + ((os.getpid() % 16) * 100 + next(_COUNTER)) % 1600
        subnet = f"10.{200 + number // 256}.{number % 256}.0/24"
        self.subnets.append(subnet)
        return subnet

    def subnet6(self) -> str:
        """A unique local /64 of this process (``fd6c:<pid>:<n>::/64``)."""
        subnet = f"fd6c:{os.getpid() % 65536:x}:{next(_COUNTER) + 1:x}::/64"
        self.subnets.append(subnet.split("::")[0] + ":")
        return subnet


def _leftover_rules(names: Names) -> list[str]:
    rules = [line for command in ("iptables-save", "ip6tables-save")
             for line in subprocess.run([command], capture_output=True, text=True, check=True).stdout.splitlines()]
    return [rule for rule in rules
            if any(bridge in rule.split() for bridge in names.bridges) or any(net in rule for net in names.subnets)]


@pytest.fixture
def names() -> Iterator[Names]:
    """Torn down after :func:`sandboxes` (which depends on it): its sandboxes' teardowns must
    leave no rule naming the test's bridges or subnets; then the bridges are deleted."""
    found = Names()
    yield found
    leftover = _leftover_rules(found)
    for bridge in found.bridges:
        subprocess.run(["ip", "link", "del", bridge], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    assert not leftover, leftover


@pytest.fixture
def sandboxes(tmp_path, names) -> Iterator[Sandboxes]:
    store = NetworkStore(str(tmp_path / "network"))
    dataplane = Netavark(config_dir=str(tmp_path / "run" / "network"))
    manager = Sandboxes(store, dataplane, netns_dir=str(tmp_path / "run" / "netns"))
    yield manager
    for container_id in list(store.sandboxes()):
        manager.detach(container_id)
    manager.remove_bridges()  # the networks' bridges outlive their endpoints


@contextlib.contextmanager
def no_teardown_meanwhile() -> Iterator[None]:
    """Hold the host-wide network lock while checking that traffic is blocked: netavark 1.4's
    complete teardown of any network (another test worker's ``network rm``) deletes the
    ``FORWARD -j NETAVARK_ISOLATION_1`` rule every bridge's isolation hangs on, until lamina
    puts it back under the same lock; a check made in that window would see traffic pass."""
    from lamina import fsutil

    with fsutil.file_lock(HOST_LOCK):
        yield
