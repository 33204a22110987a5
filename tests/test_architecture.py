"""Architecture rules, checked statically with `ast` over every module of svd_core and flows.

Layers (an arrow is "may import"): cli -> flows root (flows, `*_flow`, reporting) -> integrations -> svd_core;
apps -> integrations / svd_core; flows.settings is importable by everything in flows. Nothing imports flows.cli
(except flows.cli itself: main wires every command module) and only flows.cli imports flows.deployments.

Every import counts, also the ones inside functions: a function-level import that exists only to dodge an
import cycle is still a dependency, and the cycle is what this file reports. Imports under
`if TYPE_CHECKING:` never run, so they count for the layering rules but not for cycles. Importing
`a.b.c` is recorded as an edge to `a.b.c` only (not to the packages `a` and `a.b` it also initialises), and
`from a.b import c` is an edge to the module `a.b.c` when it exists, else to `a.b`.

The checkers are plain functions of a source root, so the tests at the bottom run them on a tiny synthetic
tree under tmp_path and prove that they do report a cycle and a layering violation.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("svd_core", "flows")


# --- the import graph ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """One import statement of our own module `source` naming our own module `target`."""

    source: str
    target: str
    path: str
    """The importing file, relative to the scanned root."""
    line: int
    lazy: bool = False
    """The import runs inside a function (not at module import time)."""
    type_only: bool = False
    """The import is under `if TYPE_CHECKING:` and never runs."""

    def describe(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.type_only:
            where += ", TYPE_CHECKING only"
        elif self.lazy:
            where += ", inside a function"
        return f"{self.source} -> {self.target} ({where})"


@dataclass
class ImportGraph:
    modules: dict[str, Path]
    """Module name -> file (a package's name maps to its __init__.py)."""
    edges: list[Edge] = field(default_factory=list)
    unresolved: list[Edge] = field(default_factory=list)
    """Imports naming one of our packages whose module has no file (the target is that missing module)."""


def discover_modules(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, Path]:
    """Every `.py` file under root/<package>, keyed by dotted module name."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if any(not part.isidentifier() for part in parts):
                continue  # not importable (e.g. a `foo-bar.py` script); nothing can import it by name
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking_test(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "TYPE_CHECKING") or (
        isinstance(node, ast.Attribute) and node.attr == "TYPE_CHECKING"
    )


def _is_import_module_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (
        name in ("import_module", "__import__")
        and len(node.args) >= 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


class _ImportCollector(ast.NodeVisitor):
    """Collects every import, nested ones too, as (imported name, module that must exist, line, lazy,
    type_only): `import a.b` needs a.b; `from a import b` imports a.b when that is a module, else takes
    the attribute b of a, so only a must exist."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.found: list[tuple[str, str, int, bool, bool]] = []
        self._function_depth = 0
        self._type_checking_depth = 0

    def _add(self, name: str, required: str, line: int) -> None:
        self.found.append((name, required, line, self._function_depth > 0, self._type_checking_depth > 0))

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function
    visit_Lambda = _visit_function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking_test(node.test):
            self._type_checking_depth += 1
            for child in node.body:
                self.visit(child)
            self._type_checking_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = self.module.split(".")
            if not self.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            self._add(base if alias.name == "*" else f"{base}.{alias.name}", base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        if _is_import_module_call(node):  # importlib.import_module("flows.x") with a literal name
            assert isinstance(node.args[0], ast.Constant)
            name = str(node.args[0].value)
            self._add(name, name, node.lineno)
        self.generic_visit(node)


def build_import_graph(root: Path, packages: Sequence[str] = PACKAGES) -> ImportGraph:
    """The import graph among our own modules (third-party imports are dropped)."""
    modules = discover_modules(root, packages)
    graph = ImportGraph(modules)
    for module, path in modules.items():
        collector = _ImportCollector(module, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        rel = path.relative_to(root).as_posix()
        for name, required, line, lazy, type_only in collector.found:
            if name.split(".")[0] not in packages:
                continue
            if required not in modules:
                graph.unresolved.append(Edge(module, required, rel, line, lazy, type_only))
                continue
            target = name if name in modules else required
            if target != module:
                graph.edges.append(Edge(module, target, rel, line, lazy, type_only))
    return graph


# --- cycles ----------------------------------------------------------------------------------------------
def find_cycles(edges: Iterable[Edge]) -> list[list[Edge]]:
    """One shortest cycle (as its edges) per strongly connected component; TYPE_CHECKING edges are ignored."""
    adjacency: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        if edge.type_only or edge.source == edge.target:
            continue
        adjacency.setdefault(edge.source, {}).setdefault(edge.target, edge)
        adjacency.setdefault(edge.target, {})

    # Tarjan's strongly connected components, iteratively (no recursion limit on long chains).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for start in sorted(adjacency):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(adjacency[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(adjacency[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    cycles = []
    for component in components:
        covered: set[str] = set()
        for start in sorted(component):  # one shortest cycle through each module not yet on a reported one
            if start not in covered:
                cycle = _shortest_cycle(start, component, adjacency)
                covered.update(edge.source for edge in cycle)
                cycles.append(cycle)
    return sorted(cycles, key=lambda cycle: [edge.source for edge in cycle])


def _shortest_cycle(start: str, component: set[str], adjacency: dict[str, dict[str, Edge]]) -> list[Edge]:
    """Breadth-first search inside a strongly connected component for the shortest way back to `start`."""
    previous: dict[str, str] = {}
    frontier = [start]
    while start not in previous:
        next_frontier = []
        for node in frontier:
            for child in sorted(adjacency[node]):
                if child in component and child not in previous:
                    previous[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    path = [start]
    node = previous[start]
    while node != start:
        path.append(node)
        node = previous[node]
    path.append(start)
    path.reverse()  # start -> ... -> start
    return [adjacency[a][b] for a, b in pairwise(path)]


def format_cycle(cycle: Sequence[Edge]) -> str:
    chain = " -> ".join([cycle[0].source, *(edge.target for edge in cycle)])
    return chain + "\n" + "\n".join(f"    {edge.describe()}" for edge in cycle)


# --- layers ----------------------------------------------------------------------------------------------
def layer_of(module: str) -> str:
    """svd_core | cli | integrations | apps | deployments | settings | flow (`*_flow`) | root (other flows)."""
    parts = module.split(".")
    if parts[0] == "svd_core":
        return "svd_core"
    if parts[0] != "flows":
        return "external"
    if len(parts) == 1:
        return "root"  # the flows package itself
    if parts[1] in ("cli", "integrations", "apps"):
        return parts[1]
    if parts[1] in ("deployments", "settings"):
        return parts[1]
    return "flow" if parts[1].endswith("_flow") else "root"


FLOWS_LAYERS = frozenset({"cli", "integrations", "apps", "deployments", "settings", "flow", "root"})

# source layer -> (layers it must not import, the rule in words)
LAYER_RULES: dict[str, tuple[frozenset[str], str]] = {
    "svd_core": (FLOWS_LAYERS, "svd_core is the plain ML library: it imports nothing from flows"),
    "integrations": (
        frozenset({"root", "flow", "deployments", "cli", "apps"}),
        "integrations import no flows root module, cli or apps (flows.settings is fine)",
    ),
    "settings": (
        frozenset({"root", "flow", "deployments", "cli", "apps"}),
        "flows.settings is imported by every layer, so it imports no flows root module, cli or apps",
    ),
    "flow": (frozenset({"cli", "deployments"}), "flows root modules import no cli and no deployments"),
    "root": (frozenset({"cli", "deployments"}), "flows root modules import no cli and no deployments"),
    "deployments": (frozenset({"cli"}), "flows root modules import no cli"),
    "apps": (
        frozenset({"cli", "flow", "root", "deployments"}),
        "apps import only integrations, svd_core and flows.settings (no cli, flow, deployments)",
    ),
}


def layering_violations(edges: Iterable[Edge]) -> list[str]:
    """Every edge that breaks a layer rule, with the rule; `nothing outside flows.cli imports flows.cli`
    follows from the table (every non-cli layer forbids cli)."""
    violations = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        forbidden, rule = LAYER_RULES.get(source, (frozenset(), ""))
        if target in forbidden:
            violations.append(f"{edge.describe()}: {rule}")
    return sorted(violations)


# --- the real tree ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_import_graph(ROOT)


def test_graph_sees_the_whole_tree(graph: ImportGraph) -> None:
    """Guard against a checker that silently scans nothing."""
    assert "svd_core.config" in graph.modules and "flows.cli.main" in graph.modules
    assert any(e.source == "flows.cli.main" and e.target == "flows.cli.config" for e in graph.edges)


def test_every_own_import_names_an_existing_module(graph: ImportGraph) -> None:
    stale = [edge.describe() for edge in graph.unresolved]
    assert stale == [], "imports of modules that do not exist (left over from a move?):\n" + "\n".join(stale)


def test_no_import_cycles(graph: ImportGraph) -> None:
    cycles = [format_cycle(cycle) for cycle in find_cycles(graph.edges)]
    assert cycles == [], (
        "import cycle(s) among our modules. A function-level import that only dodges a cycle still counts:"
        " move what both sides need into a module that imports neither (e.g. flows/reporting.py for what"
        " flows and deployments share).\n" + "\n".join(cycles)
    )


def test_no_flow_module_imports_deployments(graph: ImportGraph) -> None:
    """The cycle this file was written for: `*_flow.py` lazily importing flows.deployments (for its artifact
    builders) while flows.deployments imports the flows. The shared code belongs in flows/reporting.py."""
    offenders = [
        edge.describe()
        for edge in graph.edges
        if layer_of(edge.source) in ("flow", "root") and edge.target == "flows.deployments"
    ]
    assert offenders == [], (
        "flows/*_flow.py must not import flows.deployments (deployments runs the flows; what both need, run"
        " artifacts and dataset events, lives in flows/reporting.py):\n" + "\n".join(offenders)
    )


def test_layering(graph: ImportGraph) -> None:
    violations = layering_violations(graph.edges + graph.unresolved)
    assert violations == [], "layering violations:\n" + "\n".join(violations)


def test_nothing_outside_cli_imports_cli(graph: ImportGraph) -> None:
    offenders = [
        e.describe() for e in graph.edges if layer_of(e.target) == "cli" and layer_of(e.source) != "cli"
    ]
    assert offenders == [], "only flows.cli imports flows.cli:\n" + "\n".join(offenders)


MODULE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\.\*)?$")


def mypy_override_modules(pyproject: Path) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    names: list[str] = []
    for override in data.get("tool", {}).get("mypy", {}).get("overrides", []):
        module = override.get("module", [])
        names.extend([module] if isinstance(module, str) else module)
    return names


def missing_override_modules(names: Iterable[str], modules: Iterable[str]) -> list[str]:
    """Our own names (svd_core..., flows...) in the overrides that match no module; `pkg.*` must be a package
    (or a module) that exists. Third-party names are not checked."""
    known = set(modules)
    missing = []
    for name in names:
        if name.split(".")[0] not in PACKAGES:
            continue
        base = name.removesuffix(".*")
        if base not in known:
            missing.append(name)
    return missing


def test_mypy_override_modules_exist(graph: ImportGraph) -> None:
    missing = missing_override_modules(mypy_override_modules(ROOT / "pyproject.toml"), graph.modules)
    assert missing == [], (
        "pyproject.toml [[tool.mypy.overrides]] names modules that do not exist (renamed or moved? update"
        " the list):\n" + "\n".join(missing)
    )


def test_mypy_override_entries_are_module_names() -> None:
    bad = [n for n in mypy_override_modules(ROOT / "pyproject.toml") if not MODULE_PATTERN.match(n)]
    assert bad == [], (
        "pyproject.toml [[tool.mypy.overrides]] module lists hold entries that are not module names or"
        " `pkg.*` patterns (pasted tool output?):\n" + "\n".join(map(repr, bad))
    )


FLOWS_ROOT_FILES = frozenset({"__init__.py", "settings.py", "deployments.py", "reporting.py"})
FLOWS_SUBPACKAGES = frozenset({"cli", "integrations", "apps"})


def unexpected_flows_root_entries(flows_dir: Path) -> list[str]:
    unexpected = []
    for entry in sorted(flows_dir.iterdir()):
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name not in FLOWS_SUBPACKAGES or not (entry / "__init__.py").is_file():
                unexpected.append(entry.name + "/")
        elif not (entry.name in FLOWS_ROOT_FILES or entry.name.endswith("_flow.py")):
            unexpected.append(entry.name)
    return unexpected


def test_flows_root_holds_only_flows_and_the_shared_modules() -> None:
    unexpected = unexpected_flows_root_entries(ROOT / "flows")
    assert unexpected == [], (
        "flows/ holds only __init__.py, settings.py, deployments.py, reporting.py, *_flow.py and the cli/,"
        " integrations/, apps/ packages; move these into a layer:\n" + "\n".join(unexpected)
    )
    assert (ROOT / "flows" / "reporting.py").is_file(), "flows/reporting.py (shared run reporting) is missing"


# --- the checkers bite: a synthetic tree -----------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN_TREE = {
    "svd_core/__init__.py": "",
    "svd_core/lib.py": "import os\n",
    "svd_core/sub/__init__.py": "from .leaf import VALUE\n",
    "svd_core/sub/leaf.py": "from ..lib import os\nVALUE = 1\n",
    "flows/__init__.py": "",
    "flows/settings.py": "def load():\n    from svd_core.lib import os\n",
    "flows/reporting.py": "from flows.settings import load\n",
    "flows/a_flow.py": "from flows import reporting\nfrom flows.integrations import s3\n",
    "flows/deployments.py": "from flows import reporting\n\ndef entry():\n    from flows import a_flow\n",
    "flows/integrations/__init__.py": "",
    "flows/integrations/s3.py": "import svd_core.sub\nfrom flows.settings import load\n",
    "flows/apps/__init__.py": "",
    "flows/apps/site.py": "from flows.integrations import s3\n",
    "flows/cli/__init__.py": "",
    "flows/cli/main.py": "from flows.cli import run\n",
    "flows/cli/run.py": "from flows import a_flow, deployments\nfrom flows.apps import site\n",
}


def test_checkers_pass_a_clean_synthetic_tree(tmp_path: Path) -> None:
    graph = build_import_graph(_write(tmp_path, CLEAN_TREE))
    assert graph.unresolved == []
    assert find_cycles(graph.edges) == []
    assert layering_violations(graph.edges) == []
    assert unexpected_flows_root_entries(tmp_path / "flows") == []
    pairs = {(e.source, e.target) for e in graph.edges}
    # relative imports resolve, `from pkg import module` points at the module, lazy imports are seen
    assert {("svd_core.sub", "svd_core.sub.leaf"), ("svd_core.sub.leaf", "svd_core.lib")} <= pairs
    assert {("flows.a_flow", "flows.reporting"), ("flows.deployments", "flows.a_flow")} <= pairs
    assert ("flows.settings", "svd_core.lib") in pairs


def test_cycle_checker_reports_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    tree = dict(CLEAN_TREE)
    tree["flows/a_flow.py"] += "\ndef report():\n    from flows.deployments import entry\n"
    tree["flows/b_flow.py"] = "def report():\n    from flows import deployments\n"
    tree["flows/deployments.py"] += "\ndef other():\n    import flows.b_flow\n"
    graph = build_import_graph(_write(tmp_path, tree))
    cycles = find_cycles(graph.edges)
    assert [[(e.source, e.target) for e in cycle] for cycle in cycles] == [
        [("flows.a_flow", "flows.deployments"), ("flows.deployments", "flows.a_flow")],
        [("flows.b_flow", "flows.deployments"), ("flows.deployments", "flows.b_flow")],
    ]
    text = format_cycle(cycles[0])
    assert text.startswith("flows.a_flow -> flows.deployments -> flows.a_flow")
    assert "flows/a_flow.py:5, inside a function" in text
    assert any(
        "flows root modules import no cli and no deployments" in v for v in layering_violations(graph.edges)
    )


def test_cycle_checker_finds_a_longer_cycle_and_ignores_type_checking(tmp_path: Path) -> None:
    tree = dict(CLEAN_TREE)
    tree["svd_core/lib.py"] = "from svd_core.sub import leaf\n"  # lib -> sub.leaf -> lib ... via package
    tree["svd_core/sub/leaf.py"] = "import svd_core.other\nVALUE = 1\n"
    tree["svd_core/other.py"] = "from svd_core import lib\n"
    tree["flows/reporting.py"] = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flows.a_flow import x\n"
    )
    graph = build_import_graph(_write(tmp_path, tree))
    cycles = find_cycles(graph.edges)
    assert [[e.source for e in cycle] for cycle in cycles] == [
        ["svd_core.lib", "svd_core.sub.leaf", "svd_core.other"]
    ]
    assert any(e.type_only and e.target == "flows.a_flow" for e in graph.edges)


def test_layering_checker_reports_each_broken_rule(tmp_path: Path) -> None:
    tree = dict(CLEAN_TREE)
    tree["svd_core/lib.py"] = "def f():\n    import flows.settings\n"
    tree["flows/integrations/s3.py"] = "from flows import reporting\n"
    tree["flows/integrations/tracking.py"] = "def f():\n    from flows.cli.main import app\n"
    tree["flows/reporting.py"] = "from flows.cli import run\n"
    tree["flows/apps/site.py"] = "from flows import a_flow\nfrom flows.deployments import entry\n"
    tree["flows/settings.py"] = "import importlib\nimportlib.import_module('flows.apps.site')\n"
    graph = build_import_graph(_write(tmp_path, tree))
    found = {(v.split(" ")[0], v.split(" ")[2]) for v in layering_violations(graph.edges)}
    assert found == {
        ("svd_core.lib", "flows.settings"),
        ("flows.integrations.s3", "flows.reporting"),
        ("flows.integrations.tracking", "flows.cli.main"),
        ("flows.reporting", "flows.cli.run"),
        ("flows.apps.site", "flows.a_flow"),
        ("flows.apps.site", "flows.deployments"),
        ("flows.settings", "flows.apps.site"),
    }


def test_unresolved_imports_and_stray_root_files_are_reported(tmp_path: Path) -> None:
    tree = dict(CLEAN_TREE)
    tree["flows/a_flow.py"] = "from flows.integrations.gone import x\nimport svd_core.sub.missing\n"
    tree["flows/helpers.py"] = ""
    tree["flows/notes.md"] = ""
    tree["flows/extra/__init__.py"] = ""
    graph = build_import_graph(_write(tmp_path, tree))
    assert sorted(e.target for e in graph.unresolved) == [
        "flows.integrations.gone",
        "svd_core.sub.missing",
    ]
    assert unexpected_flows_root_entries(tmp_path / "flows") == ["extra/", "helpers.py", "notes.md"]


def test_override_checker_flags_only_our_missing_modules() -> None:
    modules = ["svd_core", "svd_core.video", "svd_core.video.decode", "flows.cli.main"]
    names = [
        "diffusers.*",
        "svd_core.video.*",
        "svd_core.video.decode",
        "svd_core.video.gone",
        "flows.x_flow",
    ]
    assert missing_override_modules(names, modules) == ["svd_core.video.gone", "flows.x_flow"]
    assert not MODULE_PATTERN.match("Found 65 errors in 27 files (checked 131 source files)")
    assert MODULE_PATTERN.match("diffusers.*") and MODULE_PATTERN.match("svd_core.tasks.lora.task")
