"""aardvark-dns's configuration files, for the endpoints lamina plugs without netavark.

netavark (:mod:`lamina.network.netavark`) writes these files for the endpoints it sets up and
starts ``aardvark-dns`` on them; lamina's CNI plumbing (:mod:`lamina.network.cni`) writes
the same lines netavark 1.4 would (``src/dns/aardvark.rs``), so a name resolves the same
whoever plugged its endpoint.

Format, one file per network under ``<netavark config>/aardvark-dns/``, named by the
network's netavark name (the request's ``name``, :attr:`lamina.network.api.Network.netavark_name`;
the Docker name for networks set up by a lamina of before it)::

    <netavark name>         first line: the gateway address(es) the server answers on,
                            comma-separated, then (space) the network's own DNS servers
                            (lamina gives none); one line per endpoint after it:
                            ``<container id> <ipv4s> <ipv6s> <names> [<dns servers>]``,
                            each list comma-separated (empty: nothing between the spaces),
                            the names the container's name then the endpoint's aliases
                            (lamina's ``DNSNames``), the DNS servers the container's
                            ``--dns`` ones, which the server forwards its questions to
    aardvark.pid            the server's pid; it re-reads every file on SIGHUP

Anchor: netavark deletes a network's file with its last entry, and the server exits with its
last file; the next endpoint of the network would then go through netavark again, which
starts the server (as the bridge would go with its last endpoint without lamina's anchor,
:mod:`lamina.network.bridges`).  lamina keeps the server answering on the network while the
network exists by an anchor line after netavark's first entry, :data:`ANCHOR_LINE`: no
address, one name under the reserved ``.invalid`` domain (aardvark-dns refuses a line
without a name), an id no container has; netavark's teardown keeps a file that has it, and
:meth:`Aardvark.release` removes it with the network.

Locking: netavark flocks ``<netavark config>/aardvark.lock`` while it appends; lamina does
too, and it also holds the engine's network lock (``<exec-root>/network.lock``,
:mod:`lamina.network.sandbox`) around every call here and every netavark call of the engine,
since netavark 1.4 rewrites a file to remove an entry without its lock. A file is rewritten
through a temporary file *outside* the directory (the server reads every file in it) and one
rename. A file left with its first line only (the anchor gone with the network) is removed,
as netavark does: the server stops answering on that network's gateway, and exits with its
last file.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lamina import errdefs, fsutil

__all__ = ["Aardvark", "entry_line", "ANCHOR_ID", "ANCHOR_LINE"]

ANCHOR_ID = "lamina-anchor"
ANCHOR_LINE = f"{ANCHOR_ID}   {ANCHOR_ID}.invalid\n"


def entry_line(container_id: str, ipv4: Iterable[str], ipv6: Iterable[str], names: Iterable[str],
               dns_servers: Iterable[str] = ()) -> str:
    """One endpoint's line, as netavark 1.4 writes it."""
    servers = ",".join(dns_servers)
    return (f"{container_id} {','.join(ipv4)} {','.join(ipv6)} {','.join(names)}"
            f"{' ' + servers if servers else ''}\n")


class Aardvark:
    """The configuration directory ``<config_dir>/aardvark-dns`` of one netavark config dir."""

    def __init__(self, config_dir: str) -> None:
        self.config_dir = config_dir
        self.directory = os.path.join(config_dir, "aardvark-dns")

    def _path(self, network_name: str) -> str:
        return os.path.join(self.directory, network_name)

    def _pid(self) -> int:
        try:
            with open(os.path.join(self.directory, "aardvark.pid"), encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return -1

    def serves(self, network_name: str) -> bool:
        """The server runs and answers on ``network_name``'s gateway (its file exists: netavark
        wrote it and signalled or started the server)."""
        if not os.path.exists(self._path(network_name)):
            return False
        pid = self._pid()
        if pid <= 0:
            return False
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
                return handle.read().strip() == "aardvark-dns"
        except OSError:
            return False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with fsutil.file_lock(os.path.join(self.config_dir, "aardvark.lock")):
            yield

    def add(self, network_name: str, line: str) -> None:
        """Append an endpoint's line to a network's existing file and signal the server."""
        with self._locked():
            try:  # never created here: a file without its first line would be no network's
                fd = os.open(self._path(network_name), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise errdefs.Unavailable(f"aardvark-dns does not serve network {network_name}") from exc
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(line)
        self.notify()

    def remove(self, container_id: str, network_names: Iterable[str]) -> None:
        """Drop ``container_id``'s lines from the networks' files (a file left with its first
        line only goes) and signal the server; a missing file is fine."""
        network_names = [name for name in network_names if os.path.exists(self._path(name))]
        if not network_names:  # (the caller's engine lock keeps them from appearing meanwhile)
            return
        changed = False
        with self._locked():
            for name in network_names:
                path = self._path(name)
                try:
                    with open(path, encoding="utf-8") as handle:
                        lines = handle.read().splitlines(keepends=True)
                except FileNotFoundError:
                    continue
                kept = [line for line in lines if line.split(" ", 1)[0] != container_id]
                if len(kept) == len(lines):
                    continue
                changed = True
                if len(kept) <= 1:
                    os.unlink(path)
                    continue
                temporary = os.path.join(self.config_dir, f".{name}.tmp")
                with open(temporary, "w", encoding="utf-8") as handle:
                    handle.writelines(kept)
                os.replace(temporary, path)
        if changed:
            self.notify()

    def keep(self, network_name: str) -> None:
        """Add the anchor to a network's file (written by netavark just before) if it has none."""
        if not os.path.exists(self._path(network_name)):
            return
        with self._locked():
            try:
                with open(self._path(network_name), "r+", encoding="utf-8") as handle:
                    lines = handle.read().splitlines(keepends=True)
                    if len(lines) > 1 and not any(line.split(" ", 1)[0] == ANCHOR_ID for line in lines):
                        handle.write(("" if lines[-1].endswith("\n") else "\n") + ANCHOR_LINE)
            except FileNotFoundError:
                pass

    def release(self, network_name: str) -> None:
        """Remove a network's anchor (its file goes when no endpoint is left in it)."""
        self.remove(ANCHOR_ID, [network_name])

    def entries(self, network_name: str) -> list[str]:
        """The endpoint lines of a network's file (without the first line and the anchor)."""
        try:
            with open(self._path(network_name), encoding="utf-8") as handle:
                return [line for line in handle.read().splitlines()[1:] if line.split(" ", 1)[0] != ANCHOR_ID]
        except FileNotFoundError:
            return []

    def notify(self) -> None:
        pid = self._pid()
        if pid > 0:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
