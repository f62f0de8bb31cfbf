"""The cgroup code is the runtime's own: no module outside ``lamina/runtime`` imports
``lamina.runtime.cgroups`` (or the limits and stats beside it); callers reach a container's
cgroup through the :class:`~lamina.runtime.api.Runtime` methods (cgroup path, OOM state,
processes, stats, forced delete)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent.parent / "lamina"
RUNTIME = PACKAGE / "runtime"
PRIVATE = ("lamina.runtime.cgroups", "lamina.runtime.cgroup_limits", "lamina.runtime.cgroup_stats")


def private_imports(source: str, filename: str = "<module>") -> list[tuple[int, str]]:
    """(line, module) of every import of the runtime's cgroup modules in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend((node.lineno, name) for name in names
                     if any(name == private or name.startswith(private + ".") for private in PRIVATE))
    return found


def _outside_runtime() -> list[pathlib.Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if RUNTIME not in path.parents)


@pytest.mark.parametrize("path", _outside_runtime(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_the_runtime_package_imports_its_cgroup_code(path: pathlib.Path) -> None:
    found = private_imports(path.read_text(), str(path))
    assert not found, (f"{path.relative_to(PACKAGE.parent)} imports {', '.join(name for _, name in found)} "
                       f"(line {found[0][0]}): use the Runtime's methods instead")


@pytest.mark.parametrize("source", [
    "from lamina.runtime.cgroups import CgroupManager\n",
    "import lamina.runtime.cgroups\n",
    "from lamina.runtime import cgroups\n",
    "def top():\n    from lamina.runtime.cgroup_stats import stats\n",
], ids=["a from-import", "a plain import", "the module from its package", "a lazy import in a function"])
def test_the_check_sees_every_form_of_import(source: str) -> None:
    assert private_imports(source)


def test_the_check_lets_the_runtime_contract_through() -> None:
    assert private_imports("from lamina.runtime.api import Runtime\nfrom lamina.runtime import registry\n") == []


def test_the_runtime_package_itself_is_the_one_using_the_cgroup_code() -> None:
    users = {path.name for path in RUNTIME.rglob("*.py") if private_imports(path.read_text(), str(path))}
    assert "native.py" in users
