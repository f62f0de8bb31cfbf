"""A container's streams: attach, logs, resize."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

from lamina import errdefs
from lamina.container import spec as specs
from lamina.container.logs import read_logs
from lamina.container.monitor import protocol
from lamina.container.store import Container
from lamina.services.containers.common import ContainerGroup

__all__ = ["ContainerStreamsImpl"]


class ContainerStreamsImpl(ContainerGroup):
    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float = 0, until: float = 0, timestamps: bool = False,
             tail: str = "all") -> Iterator[tuple[int, bytes]]:
        container = self._get(id)
        log_type, _options = specs.log_options(container.host_config)
        if log_type != "json-file":
            raise errdefs.InvalidArgument(
                f'configured logging driver does not support reading: "{log_type}" logging driver')
        if not (stdout or stderr):
            raise errdefs.InvalidArgument("You must choose at least one stream")
        tail_text = str(tail if tail is not None else "all").strip()
        if tail_text in ("", "all"):
            tail_count = None
        else:
            try:
                tail_count = int(tail_text)
            except ValueError:
                tail_count = None  # Docker treats an unparsable tail as "all"
        path = self.store.log_path(container.id)
        container_id = container.id

        def stopped() -> bool:
            return not self._still_running(container_id) or not self.monitors.alive(container_id)

        def generate() -> Iterator[tuple[int, bytes]]:
            for stream, payload, _time in read_logs(path, stdout=stdout, stderr=stderr, tail=tail_count,
                                                    since=since or None, until=until or None,
                                                    timestamps=timestamps, follow=follow, stop=stopped):
                yield (1 if stream == "stdout" else 2), payload

        return generate()

    def _still_running(self, container_id: str) -> bool:
        try:
            return bool(self.store.get(container_id).state.get("Running"))
        except errdefs.NotFound:
            return False

    def attach(self, id: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool = True,
               logs: bool = False) -> socket.socket:
        container = self._get(id)
        options = protocol.attach_hello(stdin=stdin, stdout=stdout, stderr=stderr, logs=logs, stream=stream)
        self._event(container, "attach")
        state = container.state
        if state.get("Running") and not state.get("Restarting"):
            sock = self.monitors.attach(container.id, options)
            if sock is not None:
                return sock
        if not stream:
            return self._logs_only(container, options)
        # not running yet: the next start from this process hands the other end to the monitor
        ours, pending = self.monitors.pending_attach(options)
        with self._pending_lock:
            self._pending.setdefault(container.id, []).append(pending)
        return ours

    def _logs_only(self, container: Container, options: dict[str, bool]) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        raw = bool(container.config.get("Tty"))
        path = self.store.log_path(container.id)

        def feed() -> None:
            from lamina.container.logs import frame

            try:
                if options.get("logs") and os.path.exists(path):
                    for name, payload, _time in read_logs(path, stdout=bool(options.get("stdout")),
                                                          stderr=bool(options.get("stderr"))):
                        theirs.sendall(payload if raw else frame(1 if name == "stdout" else 2, payload))
            except OSError:
                pass
            finally:
                theirs.close()

        threading.Thread(target=feed, name=f"lamina-attach-logs-{container.id[:12]}", daemon=True).start()
        return ours

    def resize(self, id: str, *, height: int, width: int) -> None:
        container = self._get(id)
        if not container.state.get("Running") or container.state.get("Restarting"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        self.monitors.resize(container.id, int(height), int(width))
        self._event(container, "resize", {"height": str(int(height)), "width": str(int(width))})
