"""APIClient: typed Docker Engine API calls over any :class:`~lamina.client.base.Transport`.

Every method builds one request; a non-2xx answer raises :class:`ClientError` carrying the
HTTP status and the daemon's ``message`` (the plumbing: :mod:`lamina.client.calls`).  Streams
stay streams: ``load`` and ``import_image`` yield the decoded JSON messages as they arrive (an
in-band ``{"error": ...}`` message is yielded like any other: the caller renders it), ``save``
yields the archive's bytes.

The methods live in one mixin per resource, as docker-py's API mixins do:
:mod:`lamina.client.system`, :mod:`~lamina.client.images`, :mod:`~lamina.client.containers`
(lifecycle, views and stdio; files), :mod:`~lamina.client.execs`, :mod:`~lamina.client.volumes`,
:mod:`~lamina.client.networks`, :mod:`~lamina.client.build`.  Each mixin subclasses
:class:`~lamina.client.calls.BaseClient`; a new resource is one more module and one more base
below.
"""

from __future__ import annotations

from lamina.client.build import BuildMixin
from lamina.client.calls import ClientError
from lamina.client.containers import ContainerFilesMixin, ContainerMixin, PendingWait
from lamina.client.distribution import DistributionMixin
from lamina.client.execs import ExecMixin
from lamina.client.images import ImageMixin
from lamina.client.networks import NetworkMixin
from lamina.client.system import SystemMixin
from lamina.client.volumes import VolumeMixin

__all__ = ["APIClient", "ClientError", "PendingWait"]


class APIClient(SystemMixin, ImageMixin, ContainerMixin, ContainerFilesMixin, ExecMixin, VolumeMixin,
                NetworkMixin, BuildMixin, DistributionMixin):
    """The Docker Engine API, one method per call: ``APIClient(transport)``."""
