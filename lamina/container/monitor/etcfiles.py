"""The container's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``.

Written at each start into the container's directory (``containers/<id>/hostname``, ``hosts``,
``resolv.conf``, mode 0644, rewritten whole: what a run sees is fixed when it starts) and
bind-mounted on their container paths by the runtime; the record's ``HostnamePath``,
``HostsPath`` and ``ResolvConfPath`` name them, as Docker's do.
"""

from __future__ import annotations

import os
from typing import Any

from lamina.container import spec as specs
from lamina.container.store import Container

__all__ = ["write_files"]


def write_files(directory: str, container: Container, sandbox: dict[str, Any] | None = None,
                link_hosts: str = "") -> dict[str, str]:
    """``hostname``, ``hosts`` and ``resolv.conf`` in the container's directory; the
    container path each is bind-mounted on -> its host path.  With a network ``sandbox``: its
    name servers in ``resolv.conf``, its addresses in ``hosts``, ``host-gateway`` resolved;
    ``link_hosts``: the ``hosts`` lines of legacy links, before the container's own address."""
    config, host = container.config, container.host_config
    network = specs.network_mode(host)
    hostname = str(config.get("Hostname") or container.id[:12])
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as handle:
            host_resolv = handle.read()
    except OSError:
        host_resolv = ""
    host_hosts = ""
    if network == "host":
        try:
            with open("/etc/hosts", encoding="utf-8", errors="replace") as handle:
                host_hosts = handle.read()
        except OSError:
            host_hosts = ""
    own_addresses, extra_hosts, servers = "", host.get("ExtraHosts") or None, None
    if sandbox is not None:
        from lamina.network.run import host_entries, name_servers

        own_addresses, extra_hosts = host_entries(sandbox, hostname, extra_hosts)
        servers = name_servers(sandbox) or None
    files = {
        "/etc/resolv.conf": ("resolv.conf", specs.resolv_conf(
            host_resolv, network=network, dns=servers or host.get("Dns"), search=host.get("DnsSearch") or None,
            options=host.get("DnsOptions") or None)),
        "/etc/hostname": ("hostname", hostname + "\n"),
        "/etc/hosts": ("hosts", specs.hosts_file(
            hostname=hostname, domainname=str(config.get("Domainname") or ""), network=network,
            extra_hosts=extra_hosts or None, host_text=host_hosts) + link_hosts + own_addresses),
    }
    out = {}
    for destination, (name, text) in files.items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)
        out[destination] = path
    return out
