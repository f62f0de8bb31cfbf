"""DESIGN.md §2: a module imports only from its own layer or below; cli never imports services."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lamina"

LAYERS = {
    "errdefs": 1, "digest": 1, "fsutil": 1, "sys": 1, "config": 1, "records": 1, "log": 1, "stdcopy": 1,
    "archive": 2, "mount": 2,
    "content": 3, "graphdriver": 3, "runtime": 3,
    "layer": 4,
    "image": 5, "container": 5, "volume": 5, "network": 5, "events": 5,
    "distribution": 6, "build": 6,
    "services": 7,
    "api": 8, "server": 8,
    "client": 9, "cli": 9,
}
FORBIDDEN = {("cli", "services")}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lamina" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = "lamina." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module == "lamina":
                found.extend((node.lineno, f"lamina.{alias.name}") for alias in node.names)
    return found


def _modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_top_level_module_has_a_layer() -> None:
    for path in _modules():
        parts = path.relative_to(PACKAGE).parts
        if parts == ("__init__.py",):
            continue
        name = parts[0].removesuffix(".py")
        assert name in LAYERS, f"lamina/{parts[0]} is not placed in a layer in tests/test_layering.py"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: pathlib.Path) -> None:
    parts = path.relative_to(PACKAGE).parts
    if parts == ("__init__.py",):
        return
    own = parts[0].removesuffix(".py")
    for line, module in _imports(path):
        target = _top(module)
        if target is None or target == own or target == "__version__":
            continue
        assert target in LAYERS, f"{path}:{line} imports unknown lamina module {module}"
        assert (own, target) not in FORBIDDEN, f"{path}:{line}: {own} must not import {module}"
        assert LAYERS[target] <= LAYERS[own], (
            f"{path}:{line}: {own} (layer {LAYERS[own]}) imports {module} (layer {LAYERS[target]}), "
            "which is above it")


def test_the_checker_catches_an_upward_import(tmp_path: pathlib.Path) -> None:
    bad = PACKAGE / "archive" / "_layering_probe.py"
    bad.write_text("from lamina.services import compose\n")
    try:
        with pytest.raises(AssertionError, match="above it"):
            test_imports_go_down_the_layers(bad)
    finally:
        bad.unlink()
