"""A run's network sandbox set up while the rest of the start goes on.

The data plane's set-up of a bridge endpoint (netavark: the veth pair, addresses, routes,
rules) takes tens of milliseconds and needs nothing of the container but its record, so the
runner starts it in a thread before it mounts the root filesystem and the volumes and resolves
the user, and joins it (:meth:`Attaching.result`) before it writes ``hosts`` and
``resolv.conf``, which name the sandbox's addresses; PID 1 is started after that.  Network
modes without a sandbox (``none``, ``host``, ``container:<id>``) start no thread.  A start
that fails anywhere calls :meth:`Attaching.discard`: it waits for the set-up and tears down
whatever it made (``detach`` of a container without a sandbox does nothing).
"""

from __future__ import annotations

import threading
from typing import Any

from lamina.container.monitor.api import MonitorNetwork

__all__ = ["Attaching"]


class Attaching:
    def __init__(self, network: MonitorNetwork | None, container_id: str, name: str, config: dict[str, Any],
                 host: dict[str, Any], networking: dict[str, Any]) -> None:
        self.network = network
        self.container_id = container_id
        self._record: dict[str, Any] | None = None
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        mode = str(host.get("NetworkMode") or "default")
        if network is None or mode in ("none", "host") or mode.startswith("container:"):
            return

        def attach() -> None:
            try:
                self._record = network.attach(container_id, name, config, host, networking)
            except BaseException as exc:  # handed to the runner's thread by result()
                self._failure = exc

        self._thread = threading.Thread(target=attach, name="network-attach", daemon=True)
        self._thread.start()

    def result(self) -> dict[str, Any] | None:
        """The sandbox record (None: no sandbox); the set-up's error is raised here."""
        if self._thread is not None:
            self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._record

    def discard(self) -> None:
        """The start failed: wait for the set-up and undo it."""
        if self._thread is None:
            return
        self._thread.join()
        if self._failure is None and self.network is not None:
            self.network.detach(self.container_id)
