"""The API test double stands for the services it replaces: it has every method of their
protocols, with the same parameters (see tests/protocolcheck.py)."""

from __future__ import annotations

import pytest
from protocolcheck import mismatches

from lamina.services import api

from .api_service_double import DoubleImages, DoubleSystem
from .container_service_double import DoubleContainers, DoubleExecs

PAIRS = [
    (api.ContainerLifecycle, DoubleContainers),
    (api.ContainerViews, DoubleContainers),
    (api.ContainerFiles, DoubleContainers),
    (api.ContainerStreams, DoubleContainers),
    (api.ExecService, DoubleExecs),
    (api.ImageService, DoubleImages),
    (api.SystemService, DoubleSystem),
]


@pytest.mark.parametrize("protocol, double", PAIRS,
                         ids=[f"{double.__name__} stands for {protocol.__name__}" for protocol, double in PAIRS])
def test_the_double_has_every_method_of_the_protocol(protocol: type, double: type) -> None:
    assert mismatches(protocol, double) == []
