"""APIClient finds each method in its resource's mixin, importing the mixin's module on first
use: the name table (``lamina.client.client._METHODS``) lists exactly the mixins' methods."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest

import lamina.client
from lamina.client import client as client_module
from lamina.client.client import APIClient


def _mixins() -> dict[str, type]:
    """Every ``*Mixin`` class the modules of lamina.client define, as "module.Class"."""
    found = {}
    for info in pkgutil.iter_modules(lamina.client.__path__):
        module = importlib.import_module(f"lamina.client.{info.name}")
        for name, value in vars(module).items():
            if name.endswith("Mixin") and inspect.isclass(value) and value.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = value
    return found


def test_the_method_table_lists_every_mixin_and_exactly_its_methods() -> None:
    mixins = _mixins()
    assert set(client_module._METHODS) == set(mixins)
    for home, mixin in mixins.items():
        defined = {name for name in vars(mixin) if not name.startswith("__")}
        assert set(client_module._METHODS[home].split()) == defined, home


def test_a_method_is_its_mixins_function_bound_to_the_client() -> None:
    client = APIClient(transport=None)  # type: ignore[arg-type]  # no request is sent
    for home, names in client_module._METHODS.items():
        mixin = _mixins()[home]
        for name in names.split():
            method = getattr(client, name)
            assert method.__func__ is vars(mixin)[name], name
            assert method.__self__ is client


def test_what_no_mixin_defines_is_an_attribute_error() -> None:
    client = APIClient(transport=None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="no_such_call"):
        client.no_such_call  # noqa: B018
    assert not hasattr(client, "__deepcopy__")


def test_the_class_has_every_method() -> None:
    for home, names in client_module._METHODS.items():
        for name in names.split():
            assert getattr(APIClient, name) is vars(_mixins()[home])[name], name
    assert issubclass(APIClient, client_module.BaseClient) and APIClient.__name__ == "APIClient"


def test_what_the_module_does_not_define_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        client_module.NoSuchName  # noqa: B018


def test_a_call_imports_its_own_mixin_only() -> None:
    code = ("import json, sys\nfrom lamina.client.client import APIClient\n"
            "APIClient(transport=None).version\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lamina.client'))))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(output) == ["lamina.client", "lamina.client.calls", "lamina.client.client",
                                  "lamina.client.system"]
