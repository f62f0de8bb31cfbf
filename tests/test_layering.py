"""DESIGN.md §2 as data, and the checks that hold the code to it.

Three rules, each with the data it reads:

1. **Layers** (:data:`LAYERS`): every top-level package or module of ``lamina`` has a layer; a
   module imports from its own package, from lower layers, and from a *peer* (another package
   on its own layer) only in the direction :data:`PEERS` allows.  Directions are checked over
   *all* imports: module level, inside functions (lamina imports heavy modules lazily inside
   the function that needs them; a lazy import is still a dependency) and under
   ``if TYPE_CHECKING:``.
2. **Beside the stack** (:data:`FORBIDDEN`): ``client`` and ``cli`` sit on top of the stack
   but beside ``services``: the CLI reaches the engine only through the Engine API
   (``client`` -> ``api``), never by importing ``services``.
3. **No import cycles inside a package**: the modules of one package may not import each
   other in a circle.  Cycles are counted over *module-level* imports, those under
   ``if TYPE_CHECKING:`` included (two modules that need each other's definitions form one
   unit, whether or not the interpreter runs the import); an import inside a function does
   not count, since deferring an import to the function that needs it is how lamina keeps
   start-up cheap, and it cannot deadlock the import system.

To place a new package: add it to :data:`LAYERS`; if it imports a package on its own layer,
add that direction to :data:`PEERS` (the test refuses a pair listed both ways).
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator, Mapping

import pytest

from lamina.records import dataclass

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lamina"

#: The layer of each top-level package or module of ``lamina`` (DESIGN.md §2, bottom = 1).
LAYERS: dict[str, int] = {
    "errdefs": 1, "digest": 1, "fsutil": 1, "sys": 1, "config": 1, "records": 1, "log": 1, "protocols": 1,
    "stdcopy": 1, "jsonobject": 1, "lazyexports": 1, "defaults": 1, "builtinhash": 1, "warmpages": 1,
    "archive": 2, "mount": 2, "dockerfile": 2, "idmap": 2, "rootless": 2,
    "content": 3, "graphdriver": 3, "runtime": 3,
    "layer": 4,
    "image": 5, "container": 5, "volume": 5, "network": 5, "events": 5,
    "distribution": 6, "build": 6,
    "services": 7,
    "api": 8, "server": 8,
    "client": 9, "cli": 9,
}

#: Imports between packages of one layer: importer -> the peers it may import.  The reverse
#: direction is then refused, so the peers of a layer stay ordered.
PEERS: dict[str, frozenset[str]] = {
    # layer 1: the error kinds and the data-class helper are the bottom of the bottom
    "digest": frozenset({"errdefs", "builtinhash"}),
    "fsutil": frozenset({"errdefs", "sys"}),
    "config": frozenset({"records", "errdefs", "defaults"}),
    "stdcopy": frozenset({"errdefs", "protocols"}),
    "jsonobject": frozenset({"errdefs"}),
    "warmpages": frozenset({"sys", "fsutil"}),
    # layers 2 (archive, mount, dockerfile), 3 (content, graphdriver, runtime) and 6 (distribution, build):
    # no peer imports another today
    # layer 5: events name images; a container uses images, volumes, the event log and its
    # network sandbox; networks emit events
    "events": frozenset({"image"}),
    "container": frozenset({"image", "volume", "events", "network"}),
    "network": frozenset({"events"}),
    # layer 8: the server serves the API's router
    "server": frozenset({"api"}),
    "mount": frozenset({"idmap"}),
    # layer 9: the CLI is a client of the Engine API
    "cli": frozenset({"client"}),
}

#: (importer, imported) pairs refused whatever the layers say.
FORBIDDEN: dict[tuple[str, str], str] = {
    ("cli", "services"): "the CLI reaches the engine through the Engine API (lamina.client), "
                         "never through lamina.services",
    ("client", "services"): "the client sits beside the stack: it reaches the engine through "
                            "lamina.api (the in-process transport uses lamina.api.router.engine_services)",
}


@dataclass(frozen=True)
class Import:
    line: int
    target: str          # the module imported: ``lamina.api.http``, or a package for names from its __init__
    module_level: bool   # False inside a function body


def module_name(path: pathlib.Path) -> str:
    parts = ("lamina",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _known_modules() -> frozenset[str]:
    return frozenset(module_name(path) for path in _modules())


def imports_of(source: str, module: str, *, is_package: bool = False,
               known: frozenset[str] = frozenset()) -> list[Import]:
    """The ``lamina`` modules ``source`` (the text of ``module``) imports.  ``from X import n``
    names the module ``X.n`` when that is a module in ``known``, else ``X``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(child.lineno, alias.name, module_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - (child.level - 1)]
                    source_module = ".".join(base + ([child.module] if child.module else []))
                else:
                    source_module = child.module or ""
                for alias in child.names:
                    candidate = f"{source_module}.{alias.name}"
                    found.append(Import(child.lineno, candidate if candidate in known else source_module,
                                        module_level))
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(ast.parse(source), True)
    return [found_import for found_import in found
            if found_import.target == "lamina" or found_import.target.startswith("lamina.")]


def top_level(module: str) -> str | None:
    """``lamina.api.http`` -> ``api``; None for the root package (it holds only the version)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def direction_problems(module: str, imports: list[Import], where: str) -> list[str]:
    """What is wrong with where ``module`` imports from (rules 1 and 2), one message each."""
    own = top_level(module)
    if own is None:
        return []
    problems = []
    if own not in LAYERS:
        return [f"{where}: lamina.{own} has no layer: add it to LAYERS in tests/test_layering.py"]
    for found in imports:
        target = top_level(found.target)
        if target is None or target == own:
            continue
        at = f"{where}:{found.line}: {module} imports {found.target}"
        if target not in LAYERS:
            problems.append(f"{at}, which has no layer: add lamina.{target} to LAYERS in tests/test_layering.py")
        elif (own, target) in FORBIDDEN:
            problems.append(f"{at}: {FORBIDDEN[own, target]}")
        elif LAYERS[target] > LAYERS[own]:
            problems.append(
                f"{at}, which is above it (layer {LAYERS[target]} over {LAYERS[own]}): move what it needs "
                f"down to layer {LAYERS[own]} or below, or take it as a constructor argument")
        elif LAYERS[target] == LAYERS[own] and target not in PEERS.get(own, frozenset()):
            if own in PEERS.get(target, frozenset()):
                problems.append(f"{at}, a peer on layer {LAYERS[own]} that imports {own}: peers import in "
                                f"one direction only (PEERS has {target} -> {own}); move what {own} needs "
                                f"from {target} into {own} or below it")
            else:
                problems.append(f"{at}, a peer on layer {LAYERS[own]}: if {own} -> {target} is the direction "
                                "you mean, add it to PEERS in tests/test_layering.py")
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def module_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the modules of its own top-level package it imports at module level;
    ``sources`` maps a module name to (its text, whether it is a package's ``__init__``)."""
    known = frozenset(sources)
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        graph[module] = {
            found.target for found in imports_of(source, module, is_package=is_package, known=known)
            if found.module_level and found.target != module and found.target in known
            and top_level(found.target) == top_level(module)}
    return graph


def _sources() -> dict[str, tuple[str, bool]]:
    return {module_name(path): (path.read_text(), path.name == "__init__.py") for path in _modules()}


def _cycle_message(component: list[str], graph: Mapping[str, set[str]]) -> str:
    members = set(component)
    edges = ", ".join(f"{source} -> {target}" for source in component
                      for target in sorted(graph[source] & members))
    return (f"import cycle among {', '.join(component)} ({edges}): move what they share into a module "
            "that imports none of them, or import inside the function that needs it")


# -- the checks ---------------------------------------------------------------------------------


def test_every_top_level_module_has_a_layer() -> None:
    missing = sorted({top for path in _modules() if (top := top_level(module_name(path))) not in LAYERS
                      and top is not None})
    assert not missing, f"not placed in a layer: {missing}: add them to LAYERS in tests/test_layering.py"


def test_peers_go_one_way_on_one_layer() -> None:
    for importer, peers in PEERS.items():
        for peer in peers:
            assert LAYERS[importer] == LAYERS[peer], f"PEERS: {importer} -> {peer} are not on one layer"
    assert not cycles({importer: set(peers) for importer, peers in PEERS.items()}), \
        "PEERS lists a circle of directions: peers import in one direction only"


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: pathlib.Path) -> None:
    module = module_name(path)
    imports = imports_of(path.read_text(), module, is_package=path.name == "__init__.py", known=_known_modules())
    problems = direction_problems(module, imports, f"lamina/{path.relative_to(PACKAGE)}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_inside_a_package() -> None:
    graph = module_graph(_sources())
    found = cycles(graph)
    assert not found, "\n".join(_cycle_message(component, graph) for component in found)


# -- the checker catches what it should -----------------------------------------------------------


def _problems(module: str, source: str) -> Iterator[str]:
    yield from direction_problems(module, imports_of(source, module, known=_known_modules()), "probe")


def test_the_checker_catches_an_upward_import_even_inside_a_function() -> None:
    source = "def f():\n    from lamina.services import compose\n"
    assert any("above it" in problem for problem in _problems("lamina.archive.probe", source))


def test_the_checker_catches_a_type_checking_import_of_the_services_from_the_client() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lamina.services.api import Services\n"
    assert any("beside the stack" in problem for problem in _problems("lamina.client.probe", source))


@pytest.mark.parametrize("importer, imported, expected", [
    ("lamina.volume.probe", "lamina.container.spec", "peers import in one direction only"),
    ("lamina.build.probe", "lamina.distribution.save", "add it to PEERS"),
    ("lamina.api.probe", "lamina.server.server", "peers import in one direction only"),
], ids=["a peer imported against the allowed direction", "a peer pair not listed",
        "the api importing the server"])
def test_the_checker_catches_a_peer_import_out_of_order(importer: str, imported: str, expected: str) -> None:
    assert any(expected in problem for problem in _problems(importer, f"import {imported}\n"))


def test_the_checker_allows_the_listed_direction_and_relative_imports() -> None:
    assert not list(_problems("lamina.container.probe", "from lamina.image import config\nfrom . import logs\n"))


def test_the_checker_finds_a_cycle_through_type_checking_but_not_through_a_function() -> None:
    sources = {
        "lamina.archive.first": ("from lamina.archive import second\n", False),
        "lamina.archive.second": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from lamina.archive.first import thing\n", False),
        "lamina.archive.third": ("def later():\n    from lamina.archive import first\n", False),
        "lamina.archive": ("", True),
    }
    graph = module_graph(sources)
    assert cycles(graph) == [["lamina.archive.first", "lamina.archive.second"]]
    assert "lamina.archive.first -> lamina.archive.second" in _cycle_message(cycles(graph)[0], graph)
