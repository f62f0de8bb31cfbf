"""The network vocabulary (Docker's CNM, seed 002) and the data plane contract.

* **network**: a named, addressed L2 domain (driver ``bridge``: a Linux bridge device; its
  IPAM config is one IPv4 subnet with a gateway).  Its record lives independently of
  containers (:mod:`lamina.network.store`).
* **endpoint**: one container joined to one network: an interface (``eth0``, ``eth1``...)
  inside the container's network namespace, an address leased from the network's subnet, a
  MAC address (Docker's ``02:42`` + the IPv4 address), aliases.
* **sandbox**: a container's network namespace, kept as a bind mount (the ``SandboxKey``) so
  it can be set up before the container's PID 1 runs and torn down after it died.
* **data plane**: what creates bridges, veth pairs, addresses, routes, firewall rules and the
  name server for a sandbox's endpoints (:class:`DataPlane`; the implementation is
  :mod:`lamina.network.netavark`).
* **netavark name**: the name a network is known by to the data plane (netavark's ``name``,
  which names its ``NETAVARK-<hash>`` chains, its port forwards' comments and aardvark-dns's
  file): not Docker's name, which two engines (or Podman) on one host may both use, but
  :attr:`Network.netavark_name`, which no other engine's network has.
* **plumbing**: which data plane made an endpoint (the sandbox record's ``Plumbing``):
  ``netavark``, or ``cni-bridge`` for an endpoint plugged by an :class:`EndpointPlane`
  (:mod:`lamina.network.cni`) on a network netavark already set up.
"""

from __future__ import annotations

from lamina.protocols import Protocol
from lamina.records import asdict, dataclass, field, fields

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DataPlane", "EndpointPlane", "Network", "PortMapping", "PREDEFINED", "DEFAULT_BRIDGE",
           "DEFAULT_BRIDGE_DEVICE"]

DEFAULT_BRIDGE = "bridge"
DEFAULT_BRIDGE_DEVICE = "lamina0"      # not docker0: lamina and Docker on one host do not fight
PREDEFINED = ("bridge", "host", "none")


@dataclass(frozen=True)
class Network:
    """A network record, with Docker's NetworkResource field names where it persists."""

    Id: str
    Name: str
    Created: str
    Driver: str = "bridge"
    Subnet: str = ""                    # "10.231.0.0/24" (bridge networks)
    Gateway: str = ""
    IPv6Subnet: str = ""                # "fd12:3456::/64" (EnableIPv6)
    IPv6Gateway: str = ""
    IPRange: str = ""
    AuxiliaryAddresses: dict[str, str] = field(default_factory=dict)
    BridgeName: str = ""                # the bridge device
    Internal: bool = False
    Attachable: bool = False
    EnableIPv6: bool = False
    Options: dict[str, str] = field(default_factory=dict)
    Labels: dict[str, str] = field(default_factory=dict)
    IPAMOptions: dict[str, str] = field(default_factory=dict)
    IPAMConfigured: bool = False        # the IPAM config was given by the creator (Docker shows it then)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def dns_enabled(self) -> bool:
        """User-defined bridge networks resolve container names; the default bridge does not
        (as in Docker), nor do macvlan networks (aardvark-dns listens on the gateway's address,
        which is on no host interface for macvlan)."""
        return self.Driver == "bridge" and self.Name != DEFAULT_BRIDGE

    @property
    def netavark_name(self) -> str:
        """The network's name for the data plane (see the module docstring): its id, which is
        random for a created network; the default ``bridge``'s id is the same in every engine
        (:func:`lamina.network.store.predefined_id`), so its name is the sha256 of its id and its
        bridge device, which is the engine's own (``lamina0`` for the default data root,
        ``lamina<8 hex>`` of its path for any other)."""
        if self.Name != DEFAULT_BRIDGE:
            return self.Id
        import hashlib  # not at import: loading OpenSSL costs every command a few ms

        return hashlib.sha256(f"{self.Id} {self.BridgeName}".encode()).hexdigest()

    def resource(self, containers: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's NetworkResource."""
        config: list[dict[str, Any]] = []
        if self.Subnet:
            entry: dict[str, Any] = {"Subnet": self.Subnet, "Gateway": self.Gateway}
            if self.IPRange:
                entry["IPRange"] = self.IPRange
            if self.AuxiliaryAddresses:
                entry["AuxiliaryAddresses"] = dict(self.AuxiliaryAddresses)
            config.append(entry)
        if self.IPv6Subnet:
            config.append({"Subnet": self.IPv6Subnet, "Gateway": self.IPv6Gateway})
        return {
            "Name": self.Name, "Id": self.Id, "Created": self.Created, "Scope": "local",
            "Driver": self.Driver, "EnableIPv6": self.EnableIPv6,
            "IPAM": {"Driver": "default", "Options": dict(self.IPAMOptions) or None, "Config": config},
            "Internal": self.Internal, "Attachable": self.Attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": dict(containers or {}), "Options": dict(self.Options), "Labels": dict(self.Labels),
        }


@dataclass(frozen=True)
class PortMapping:
    """One published port range: ``HostPort``..+``Range`` on ``HostIp`` to ``ContainerPort``."""

    ContainerPort: int
    Protocol: str = "tcp"
    HostIp: str = ""
    HostPort: int = 0                   # 0: a random free port is chosen at set-up
    Range: int = 1


class DataPlane(Protocol):
    """Creates and removes what a sandbox's endpoints need on the host and in the namespace.

    ``request`` is the sandbox's full description (networks, addresses, ports); the same
    request given to ``setup`` is given to ``teardown``."""

    def setup(self, netns_path: str, request: dict[str, Any]) -> dict[str, Any]:
        """Per network name: the interfaces made (``mac_address``, addresses), the name servers."""

    def teardown(self, netns_path: str, request: dict[str, Any]) -> None: ...


class EndpointPlane(DataPlane, Protocol):
    """A data plane for single endpoints on networks another plane set up (the bridge, its
    rules and name server exist); the same requests and answers as :class:`DataPlane`."""

    def fits(self, info: dict[str, Any], per_network: dict[str, Any]) -> bool:
        """Whether this plane can plug the endpoint (a request's ``network_info`` and
        ``networks`` entries of one network) now, with the result the other plane would give."""

    def keep(self, info: dict[str, Any]) -> None:
        """Keep what the other plane set up for a network (a request's ``network_info`` entry)
        that this plane needs, until :meth:`release`."""

    def release(self, network_name: str) -> None:
        """The network goes: what :meth:`keep` kept goes.  ``network_name``: the name its
        plumbing was set up with (a request's ``network_info`` ``name``, its netavark name)."""
