"""Each service implements the protocols its consumers hold it by (``lamina/services/api.py``):
every method a protocol names exists with the same parameters (name, kind, default); an
implementation may add parameters only with defaults.  No type checker runs in the test
suite, so this is what keeps a protocol and its implementation from drifting apart."""

from __future__ import annotations

import typing

import pytest
from protocolcheck import methods, mismatches

from lamina.services import api
from lamina.services.builds import BuildServiceImpl
from lamina.services.compose import EngineServices
from lamina.services.containers.files import ContainerFilesImpl
from lamina.services.containers.lifecycle import ContainerLifecycleImpl
from lamina.services.containers.streams import ContainerStreamsImpl
from lamina.services.containers.views import ContainerViewsImpl
from lamina.services.events import EventServiceImpl
from lamina.services.execs import ExecServiceImpl
from lamina.services.images import ImageServiceImpl
from lamina.services.system import SystemServiceImpl
from lamina.services.volumes import VolumeServiceImpl

PAIRS = [
    (api.ContainerLifecycle, ContainerLifecycleImpl),
    (api.ContainerViews, ContainerViewsImpl),
    (api.ContainerFiles, ContainerFilesImpl),
    (api.ContainerStreams, ContainerStreamsImpl),
    (api.ImageService, ImageServiceImpl),
    (api.SystemService, SystemServiceImpl),
    (api.ExecService, ExecServiceImpl),
    (api.VolumeService, VolumeServiceImpl),
    (api.BuildService, BuildServiceImpl),
    (api.EventService, EventServiceImpl),
    (api.ContainerVolumes, VolumeServiceImpl),
    (api.VolumeUsage, VolumeServiceImpl),
    (api.BuildCacheUsage, BuildServiceImpl),
]


@pytest.mark.parametrize("protocol, implementation", PAIRS,
                         ids=[f"{impl.__name__} implements {protocol.__name__}" for protocol, impl in PAIRS])
def test_the_implementation_has_every_method_of_the_protocol(protocol: type, implementation: type) -> None:
    assert methods(protocol), "a protocol without methods checks nothing"
    assert mismatches(protocol, implementation) == []


def test_the_check_sees_a_missing_method_a_renamed_parameter_and_a_changed_default() -> None:
    class Wanted(typing.Protocol):
        def start(self, id: str, *, force: bool = False) -> None: ...

        def stop(self, id: str) -> None: ...

    class Drifted:
        def start(self, identifier: str, *, force: bool = True) -> None: ...

    assert mismatches(Wanted, Drifted) == ["start: no parameter 'id'", "start: 'force' defaults to True, "
                                            "the protocol says False", "start: the required parameter "
                                            "'identifier' is not in the protocol", "stop: missing"]


def test_the_engine_provides_every_service_the_router_uses() -> None:
    wanted = typing.get_type_hints(api.Services)
    assert {"containers", "container_views", "container_files", "container_streams"} <= set(wanted)
    assert [name for name in wanted if not hasattr(EngineServices, name)] == []
