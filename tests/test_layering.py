"""The layers are a contract: a test fails as soon as an import crosses one the wrong way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "connector"

# package -> packages it must never import (module-level or inside functions alike).
FORBIDDEN: dict[str, set[str]] = {
    "http": {"dataset", "extraction", "reporting", "cli", "simulator"},
    "dataset": {"http", "extraction", "reporting", "cli", "simulator"},
    "reporting": {"http", "extraction", "cli", "simulator"},
    "extraction": {"reporting", "cli", "simulator"},
    # the publish checks and the dataset's health: read by extraction/ and reporting/
    "checks": {"http", "extraction", "reporting", "cli", "simulator"},
}
SIMULATOR_USERS = {"simulator", "cli"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "connector" or name.startswith("connector.")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_respect_the_layers(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts
    layer = own[0] if len(own) > 1 else ""
    used = {layer_of(module) for module in imported_modules(path)}
    crossing = used & FORBIDDEN.get(layer, set())
    assert not crossing, f"{path.relative_to(PACKAGE)} imports {sorted(crossing)}"
    if layer not in SIMULATOR_USERS:
        assert "simulator" not in used, f"{path.relative_to(PACKAGE)} imports the simulator"


def test_the_checker_sees_a_crossing(tmp_path: Path) -> None:
    """A contract that cannot fail proves nothing: the parser must find both import forms."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from connector.dataset.writer import SnapshotWriter\n"
        "def f():\n    import connector.simulator.server\n"
    )
    assert {layer_of(m) for m in imported_modules(probe)} >= {"dataset", "simulator"}


def test_the_docs_module_map_names_every_module() -> None:
    """The map of the package in docs/development.md must not drift from the tree."""
    docs = (PACKAGE.parent / "docs" / "development.md").read_text(encoding="utf-8")
    section = docs[docs.index("## The package") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```\n")]
    missing = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if not path.name.startswith("__") and not re.search(rf"(?<![\w.]){path.name}\b", block)
    ]
    packages = sorted({path.parent.name for path in modules() if path.parent != PACKAGE})
    missing += [f"{name}/" for name in packages if f"  {name}/" not in block]
    assert missing == [], "add these to the module map in docs/development.md"


TESTS = Path(__file__).parent


def imported_test_modules(path: Path) -> set[str]:
    """The test modules (`test_*`) and `conftest` a file under tests/ imports, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {name for name in names if name.startswith("test_") or name == "conftest"}


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_module_imports_another(path: Path) -> None:
    """Shared helpers live in tests/helpers.py and the modules beside it, fixtures in conftest.py:
    importing a test module runs its collection twice and ties unrelated tests together."""
    imported = imported_test_modules(path)
    assert not imported, (
        f"tests/{path.name} imports {sorted(imported)}: move what it needs to tests/helpers.py "
        "(or a helper module beside it) or to a fixture in conftest.py"
    )


def test_the_test_import_checker_sees_both_forms(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from test_dataset import V\ndef f():\n    import test_s3\n    from conftest import X\n"
    )
    assert imported_test_modules(probe) == {"test_dataset", "test_s3", "conftest"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, known: set[str], root: Path) -> set[str]:
    """The connector modules a module imports when it runs: at module level or inside a
    function alike (a function-level import still makes a cycle), but not under TYPE_CHECKING
    (it never runs); `from package import module` counts as the module."""
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(m for alias in node.names if (m := resolve(alias.name)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = resolve(f"{node.module}.{alias.name}") or resolve(node.module)
                if target:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found - {_module_name(path, root)}


def import_cycles(paths: list[Path], root: Path = PACKAGE.parent) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm); `root` is the
    directory that holds the package."""
    known = {_module_name(path, root) for path in paths}
    graph = {_module_name(path, root): _runtime_imports(path, known, root) for path in paths}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Inside packages too, and through imports made inside functions."""
    assert import_cycles(modules()) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    package = tmp_path / "connector"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from connector import b\n")
    (package / "b.py").write_text("def f():\n    from connector.a import x\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from connector import a\n"
    )
    assert import_cycles(sorted(package.rglob("*.py")), tmp_path) == [
        ["connector.a", "connector.b"]
    ]
