"""APIClient: typed Docker Engine API calls over any :class:`~lamina.client.api.Transport`.

Every method builds one request; a non-2xx answer raises :class:`ClientError` carrying the
HTTP status and the daemon's ``message`` (the plumbing: :mod:`lamina.client.calls`).  Streams
stay streams: ``load`` and ``import_image`` yield the decoded JSON messages as they arrive (an
in-band ``{"error": ...}`` message is yielded like any other: the caller renders it), ``save``
yields the archive's bytes.

The methods live in one mixin per resource, as docker-py's API mixins do:
:mod:`lamina.client.system`, :mod:`~lamina.client.images`, :mod:`~lamina.client.containers`
(lifecycle, views and stdio; files), :mod:`~lamina.client.execs`, :mod:`~lamina.client.volumes`,
:mod:`~lamina.client.networks`, :mod:`~lamina.client.build`, :mod:`~lamina.client.distribution`.
Each mixin subclasses :class:`~lamina.client.calls.BaseClient`.  Type checkers see
:class:`APIClient` as the subclass of them all.  At run time it is a :class:`BaseClient` whose
methods are named in :data:`_METHODS` (mixin -> its methods' names), each a descriptor that
imports the mixin's module when the method is first looked up: a command loads the code of the
calls it makes, not of all ~70.  A new
resource is one more module, its line in :data:`_METHODS` and one more base of the type
checkers' class (a test holds the table to the mixins).
"""

from __future__ import annotations

import importlib

from lamina.client.calls import BaseClient, ClientError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.client.build import BuildMixin
    from lamina.client.containers import ContainerFilesMixin, ContainerMixin
    from lamina.client.distribution import DistributionMixin
    from lamina.client.execs import ExecMixin
    from lamina.client.images import ImageMixin
    from lamina.client.networks import NetworkMixin
    from lamina.client.system import SystemMixin
    from lamina.client.volumes import VolumeMixin

__all__ = ["APIClient", "ClientError"]

#: "module.Mixin" (under lamina.client) -> the names of the methods it defines
_METHODS = {
    "system.SystemMixin": "ping version info system_df system_check system_boot events",
    "images.ImageMixin": "images inspect_image history tag remove_image prune_images load save import_image pull",
    "containers.ContainerMixin": "create_container start stop restart kill remove_container pause unpause rename "
                                 "update prune_containers wait_later wait containers inspect_container top stats "
                                 "logs attach resize",
    "containers.ContainerFilesMixin": "changes export archive_stat get_archive put_archive commit",
    "execs.ExecMixin": "exec_create exec_start exec_inspect exec_resize",
    "volumes.VolumeMixin": "volumes create_volume inspect_volume remove_volume prune_volumes",
    "networks.NetworkMixin": "networks inspect_network create_network remove_network prune_networks "
                             "connect_network disconnect_network",
    "build.BuildMixin": "build prune_build_cache",
    "distribution.DistributionMixin": "pull_image push login inspect_distribution search manifest",
}
_HOMES = {name: mixin for mixin, names in _METHODS.items() for name in names.split()}


def _mixin(home: str) -> type:
    module, _, name = home.partition(".")
    return getattr(importlib.import_module(f"lamina.client.{module}"), name)  # type: ignore[no-any-return]


class _Method:
    """A method of a mixin on :class:`APIClient`: the mixin's module is imported when the
    method is first looked up, and the mixin's function bound as its own would be."""

    __slots__ = ("home", "name")

    def __init__(self, home: str, name: str) -> None:
        self.home = home
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return vars(_mixin(self.home))[self.name].__get__(instance, owner)


if TYPE_CHECKING:
    class APIClient(SystemMixin, ImageMixin, ContainerMixin, ContainerFilesMixin, ExecMixin, VolumeMixin,
                    NetworkMixin, BuildMixin, DistributionMixin):
        """The Docker Engine API, one method per call: ``APIClient(transport)``."""
else:
    APIClient = type("APIClient", (BaseClient,), {
        "__module__": __name__, "__qualname__": "APIClient",
        "__doc__": "The Docker Engine API, one method per call: ``APIClient(transport)``.",
        **{name: _Method(home, name) for name, home in _HOMES.items()},
    })

