"""Each service implements the protocols its consumers hold it by (``lamina/services/api.py``):
every method a protocol names exists with the same parameters (name, kind, default); an
implementation may add parameters only with defaults.  No type checker runs in the test
suite, so this is what keeps a protocol and its implementation from drifting apart."""

from __future__ import annotations

import inspect
import typing

import pytest

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


def _methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


def _mismatches(protocol: type, implementation: type) -> list[str]:
    problems = []
    for name in _methods(protocol):
        method = getattr(implementation, name, None)
        if method is None:
            problems.append(f"{name}: missing")
            continue
        wanted = inspect.signature(getattr(protocol, name)).parameters
        given = inspect.signature(method).parameters
        for parameter in wanted.values():
            other = given.get(parameter.name)
            if other is None:
                problems.append(f"{name}: no parameter {parameter.name!r}")
            elif other.kind != parameter.kind:
                problems.append(f"{name}: {parameter.name!r} is {other.kind.description}, "
                                f"the protocol says {parameter.kind.description}")
            elif other.default != parameter.default:
                problems.append(f"{name}: {parameter.name!r} defaults to {other.default!r}, "
                                f"the protocol says {parameter.default!r}")
        for parameter in given.values():
            if parameter.name not in wanted and parameter.default is inspect.Parameter.empty \
                    and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                problems.append(f"{name}: the required parameter {parameter.name!r} is not in the protocol")
    return problems


@pytest.mark.parametrize("protocol, implementation", PAIRS,
                         ids=[f"{impl.__name__} implements {protocol.__name__}" for protocol, impl in PAIRS])
def test_the_implementation_has_every_method_of_the_protocol(protocol: type, implementation: type) -> None:
    assert _methods(protocol), "a protocol without methods checks nothing"
    assert _mismatches(protocol, implementation) == []


def test_the_check_sees_a_missing_method_a_renamed_parameter_and_a_changed_default() -> None:
    class Wanted(typing.Protocol):
        def start(self, id: str, *, force: bool = False) -> None: ...

        def stop(self, id: str) -> None: ...

    class Drifted:
        def start(self, identifier: str, *, force: bool = True) -> None: ...

    assert _mismatches(Wanted, Drifted) == ["start: no parameter 'id'", "start: 'force' defaults to True, "
                                            "the protocol says False", "start: the required parameter "
                                            "'identifier' is not in the protocol", "stop: missing"]


def test_the_engine_provides_every_service_the_router_uses() -> None:
    wanted = typing.get_type_hints(api.Services)
    assert {"containers", "container_views", "container_files", "container_streams"} <= set(wanted)
    assert [name for name in wanted if not hasattr(EngineServices, name)] == []
