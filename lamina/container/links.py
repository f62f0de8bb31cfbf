"""Docker's legacy container links (``--link NAME[:ALIAS]``, ``HostConfig.Links``).

A link works on the default ``bridge`` network only (where containers do not resolve each
other by name).  At create the target must exist; the link is stored in ``HostConfig.Links``
as Docker shows it in inspect, ``/target:/this/alias`` (the commit point is the container's
record itself).  At each start the target must be running on the default bridge; the linked
container then gets, as in Docker:

- ``/etc/hosts`` lines ``IP\\talias hostname [name]`` (the target's bridge address, its hostname,
  its name when the alias differs), before the container's own address;
- the environment of moby's ``links.ToEnv``, ahead of the container's own ``Env`` (which
  wins): ``ALIAS_NAME=/this/alias``, ``ALIAS_PORT=proto://IP:port`` (the lowest exposed
  port, tcp first), per exposed port ``ALIAS_PORT_<port>_<PROTO>`` and its ``_ADDR``,
  ``_PORT``, ``_PROTO``, ranges of three or more consecutive ports as ``..._START``/``_END``,
  and ``ALIAS_ENV_<var>`` for the target's ``Config.Env`` but ``HOME`` and ``PATH``.  ``ALIAS``
  is the alias upper-cased, ``-`` as ``_``.

The target is found by name at start (a renamed target breaks the link: Docker follows it).

On a user-defined network a link is an alias of the target *for this container only*
(Docker's ``EndpointSettings.Links``, ``docker run --network NET --link web:alias``): no
variables, no check of the target at create or start (Docker accepts a target that does not
exist, is not running or is on another network: the alias then does not resolve).  Docker's
embedded resolver answers such aliases per client; aardvark-dns cannot, so lamina writes them
to ``/etc/hosts`` at each start: ``IP\talias [name]`` (the target's address on the shared
network, its name when the alias differs) for each target running on that network then.  A
``HostConfig.Links`` given with a user-defined network mode (docker-py's ``links=``) moves to
the primary network's ``EndpointsConfig.Links`` at create (:func:`on_user_network`), where the
docker CLI puts it; ``HostConfig.Links`` is then empty, as Docker's inspect shows it.  A target
that starts after its linker, or again with another address, is followed as Docker's resolver
follows it: its monitor rewrites, in place, the lines of that link in the ``/etc/hosts`` of the
running containers linking to it (:func:`update_linkers`; the links are kept in the linkers'
sandbox records).  A target that stops leaves its line (Docker's resolver stops answering).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lamina import errdefs
from lamina.network.api import DEFAULT_BRIDGE
from lamina.records import dataclass

__all__ = ["Link", "LinkTarget", "parse", "check", "stored", "resolve", "environment", "hosts_lines",
           "on_user_network", "user_network_hosts_lines", "as_target_entries", "update_hosts", "update_linkers",
           "USER_NETWORK_ONLY"]

USER_NETWORK_ONLY = "links are only supported for user-defined networks"


def _user_defined(mode: str) -> bool:
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")


class LinkTarget(Protocol):
    """What a link needs of its target container (:class:`lamina.container.store.Container`)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def host_config(self) -> dict[str, Any]: ...

    @property
    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Link:
    """One resolved link: the alias's full name (``/this/alias``), the target's address."""

    name: str                 # /this/alias
    alias: str
    target_name: str          # /target
    target_hostname: str
    address: str
    ports: tuple[tuple[int, str], ...]   # (port, protocol), sorted as moby sorts them
    target_env: tuple[str, ...]


def parse(spec: Any) -> tuple[str, str]:
    """(target name without ``/``, alias) of ``name[:alias]`` or the stored ``/name:/this/alias``
    (Docker's ``opts.ParseLink``: the alias is the last path element)."""
    text = str(spec or "")
    if not text:
        raise errdefs.InvalidArgument("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2 or not parts[0].strip("/"):
        raise errdefs.InvalidArgument(f"bad format for links: {text}")
    name = parts[0].strip("/")
    alias = parts[1].rstrip("/").rsplit("/", 1)[-1] if len(parts) == 2 else name
    if not alias:
        raise errdefs.InvalidArgument(f"bad format for links: {text}")
    return name, alias


def check(host: Mapping[str, Any], lookup: Callable[[str], LinkTarget]) -> list[tuple[str, str]]:
    """The links of a create, checked: (target's name with ``/``, alias) each.  Links need the
    default bridge network; each target must exist and not use the host's network."""
    links = host.get("Links") or []
    if not links:
        return []
    if not isinstance(links, list):
        raise errdefs.InvalidArgument("HostConfig.Links must be a list of strings")
    mode = str(host.get("NetworkMode") or "default")
    if mode == "host":
        raise errdefs.InvalidArgument("conflicting options: host type networking can't be used with links. "
                                      "This would result in undefined behavior")
    if mode not in ("default", "bridge"):  # a user-defined network's moved to its endpoint already
        raise errdefs.InvalidArgument(
            f"lamina supports links (--link) on the default bridge network and on user-defined networks, not "
            f"with network mode {mode}")
    checked = []
    for spec in links:
        name, alias = parse(spec)
        try:
            target = lookup(name)
        except errdefs.NotFound as exc:
            raise errdefs.InvalidArgument(f"could not get container for {name}: {exc}") from exc
        if str(target.host_config.get("NetworkMode") or "") == "host":
            raise errdefs.InvalidArgument("conflicting options: host type networking can't be used with links. "
                                          "This would result in undefined behavior")
        checked.append((target.name, alias))
    return checked


def _link_list(value: Any, where: str) -> list[str]:
    if not value:
        return []
    if not isinstance(value, list):
        raise errdefs.InvalidArgument(f"{where} must be a list of strings")
    for spec in value:
        parse(spec)
    return [str(spec) for spec in value]


def on_user_network(host: dict[str, Any], networking: Mapping[str, Any]) -> dict[str, Any]:
    """The create's ``NetworkingConfig`` with the links of user-defined networks checked (their
    format; not their targets, as Docker) and ``HostConfig.Links`` of a user-defined network
    mode moved to the primary network's ``EndpointsConfig.Links`` (``host["Links"]`` is then
    None).  Links of the default bridge in ``EndpointsConfig`` are refused, as by the docker CLI."""
    endpoints = networking.get("EndpointsConfig") or {}
    if not isinstance(endpoints, Mapping):
        return dict(networking)  # refused by the network checks, with their message
    mode = str(host.get("NetworkMode") or "default")
    changed = {}
    for name, endpoint in endpoints.items():
        if isinstance(endpoint, Mapping) and endpoint.get("Links"):
            if not _user_defined(name):
                raise errdefs.InvalidArgument(f"{USER_NETWORK_ONLY} (EndpointsConfig.{name}.Links)")
            _link_list(endpoint["Links"], f"EndpointsConfig.{name}.Links")
    if _user_defined(mode) and host.get("Links"):
        given = _link_list(host["Links"], "HostConfig.Links")
        endpoint = dict(endpoints.get(mode) or {})
        # the docker CLI sends both: one entry per link
        endpoint["Links"] = list(dict.fromkeys([*(endpoint.get("Links") or []), *given]))
        changed[mode] = endpoint
        host["Links"] = None
    if not changed:
        return dict(networking)
    return {**networking, "EndpointsConfig": {**endpoints, **changed}}


def user_network_hosts_lines(networks: Mapping[str, Any], own: Mapping[str, Any] | None,
                             lookup: Callable[[str], LinkTarget],
                             sandbox: Callable[[str], Mapping[str, Any] | None]) -> str:
    """The ``/etc/hosts`` lines of the links of user-defined networks at a start: ``networks``
    is the container's ``NetworkSettings.Networks`` (``Links`` per network), ``own`` its sandbox
    record; a target that is gone, not running or not on that network gets no line."""
    lines = ""
    own_endpoints = (own or {}).get("Endpoints") or {}
    for network_name, settings in networks.items():
        specs = (settings or {}).get("Links") or []
        endpoint = own_endpoints.get(network_name)
        if not specs or not endpoint:
            continue
        for spec in specs:
            name, alias = parse(spec)
            try:
                target = lookup(name)
            except errdefs.NotFound:
                continue
            if not target.state.get("Running"):
                continue
            shared = [other for other in ((sandbox(target.id) or {}).get("Endpoints") or {}).values()
                      if other.get("NetworkID") == endpoint["NetworkID"]]
            if not shared:
                continue
            names = _names(alias, target.name.lstrip("/"))
            for address in (shared[0].get("IPAddress"), shared[0].get("GlobalIPv6Address")):
                if address:
                    lines += f"{address}\t{names}\n"
    return lines


def _names(alias: str, target_name: str) -> str:
    return alias if alias == target_name else f"{alias} {target_name}"


def as_target_entries(this_id: str, this_name: str, own: Mapping[str, Any], network: str,
                      specs: list[str]) -> dict[str, list[str]]:
    """For a container starting (``this``, its sandbox record ``own``): the ``/etc/hosts``
    entries a linker's ``specs`` on ``network`` want of it, names -> addresses (the link's
    target is this container's name or id)."""
    name = this_name.lstrip("/")
    endpoint = ((own.get("Endpoints") or {}).get(network)) or {}
    addresses = [address for address in (endpoint.get("IPAddress"), endpoint.get("GlobalIPv6Address")) if address]
    entries: dict[str, list[str]] = {}
    for spec in specs:
        target, alias = parse(spec)
        if addresses and (target == name or (len(target) >= 12 and this_id.startswith(target))):
            entries[_names(alias, name)] = addresses
    return entries


def update_linkers(this_id: str, this_name: str, own: Mapping[str, Any], linkers: list[tuple[str, str, list[str]]],
                   directory: Callable[[str], str]) -> None:
    """For a container starting: rewrite the lines naming it in the ``hosts`` file (in
    ``directory(id)``) of each of ``linkers`` (container id, network name, its links there)."""
    for other_id, network, specs in linkers:
        entries = as_target_entries(this_id, this_name, own, network, specs)
        if entries:
            try:
                update_hosts(os.path.join(directory(other_id), "hosts"), entries)
            except FileNotFoundError:
                continue  # removed meanwhile


def update_hosts(path: str, entries: Mapping[str, list[str]]) -> None:
    """Rewrite, in place (the file is bind-mounted into a running container), the lines of
    ``entries``' names in the ``/etc/hosts`` at ``path`` with their new addresses."""
    import fcntl

    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        kept = [line for line in handle.read().splitlines() if line.partition("\t")[2] not in entries]
        kept.extend(f"{address}\t{names}" for names, addresses in entries.items() for address in addresses)
        handle.seek(0)
        handle.truncate()
        handle.write("".join(line + "\n" for line in kept))


def stored(checked: list[tuple[str, str]], this_name: str) -> list[str] | None:
    """``HostConfig.Links`` as Docker shows it: ``/target:/this/alias``."""
    return [f"{target}:{this_name}/{alias}" for target, alias in checked] or None


def resolve(host: Mapping[str, Any], this_name: str, lookup: Callable[[str], LinkTarget],
            sandbox: Callable[[str], Mapping[str, Any] | None]) -> list[Link]:
    """The links of a start; ``sandbox(id)``: a container's network sandbox record (its
    endpoints by network name).  A target that is gone, stopped or off the default bridge fails
    the start."""
    links = []
    for spec in host.get("Links") or []:
        name, alias = parse(spec)
        full_name = f"{this_name}/{alias}"
        try:
            target = lookup(name)
        except errdefs.NotFound as exc:
            raise errdefs.InvalidArgument(f"could not get container for {name}: {exc}") from exc
        if not target.state.get("Running"):
            raise errdefs.System(f"Cannot link to a non running container: {target.name} AS {full_name}")
        endpoint = ((sandbox(target.id) or {}).get("Endpoints") or {}).get(DEFAULT_BRIDGE) or {}
        address = str(endpoint.get("IPAddress") or "")
        if not address:
            raise errdefs.System(f"Cannot link to {target.name}, as it does not belong to the default network")
        links.append(Link(name=full_name, alias=alias, target_name=target.name,
                          target_hostname=str(target.config.get("Hostname") or target.id[:12]), address=address,
                          ports=_ports(target.config.get("ExposedPorts") or {}),
                          target_env=tuple(str(item) for item in target.config.get("Env") or ())))
    return links


def _ports(exposed: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    ports = []
    for key in exposed:
        number, _, protocol = str(key).partition("/")
        if number.isdigit():
            ports.append((int(number), (protocol or "tcp").lower()))
    # moby's order: by number, tcp first for the same number
    return tuple(sorted(ports, key=lambda port: (port[0], port[1] != "tcp", port[1])))


def _variable_prefix(alias: str) -> str:
    return alias.upper().replace("-", "_")


def environment(links: list[Link]) -> list[str]:
    """The legacy variables of every link, in moby's order."""
    env: list[str] = []
    for link in links:
        prefix, ip, ports = _variable_prefix(link.alias), link.address, link.ports
        if ports:
            port, protocol = ports[0]
            env.append(f"{prefix}_PORT={protocol}://{ip}:{port}")
        index = 0
        while index < len(ports):
            last = index
            while last + 1 < len(ports) and ports[last + 1][0] == ports[last][0] + 1:
                last += 1
            if last > index + 1:
                (first_port, protocol), (last_port, last_protocol) = ports[index], ports[last]
                key = f"{prefix}_PORT_{first_port}_{protocol.upper()}"
                env.extend([f"{key}_START={protocol}://{ip}:{first_port}", f"{key}_ADDR={ip}",
                            f"{key}_PROTO={protocol}", f"{key}_PORT_START={first_port}",
                            f"{prefix}_PORT_{first_port}_{last_protocol.upper()}_END={last_protocol}://{ip}:{last_port}",
                            f"{prefix}_PORT_{first_port}_{last_protocol.upper()}_PORT_END={last_port}"])
                index = last + 1
            else:
                index += 1
        for port, protocol in ports:
            key = f"{prefix}_PORT_{port}_{protocol.upper()}"
            env.extend([f"{key}={protocol}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}",
                        f"{key}_PROTO={protocol}"])
        env.append(f"{prefix}_NAME={link.name}")
        for item in link.target_env:
            variable, separator, value = item.partition("=")
            if separator and variable not in ("HOME", "PATH"):
                env.append(f"{prefix}_ENV_{variable}={value}")
    return env


def hosts_lines(links: list[Link]) -> str:
    """The ``/etc/hosts`` lines of the links: the alias, the target's hostname and its name."""
    lines = ""
    for link in links:
        names = [link.alias, link.target_hostname]
        if link.alias != link.target_name.lstrip("/"):
            names.append(link.target_name.lstrip("/"))
        lines += f"{link.address}\t{' '.join(names)}\n"
    return lines
