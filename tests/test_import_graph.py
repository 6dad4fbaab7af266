"""No import circle in the product, read from the import graph (grimp, which import-linter's contracts in
pyproject.toml run on), lazy imports inside functions included.

A circle between modules that import names from each other only shows when it is entered at one
particular module: Django's URL loading happened to enter it elsewhere, so pages worked while a worker or
a shell that imported that module first crashed. Read statically, every circle shows, however it is
entered and whether or not a lazy import hides it at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp


def imported_by(graph: grimp.ImportGraph, importer: str) -> list[str]:
    """What loading `importer` loads: the modules it imports and, for each, the packages above it that
    `importer` is not inside — importing `a.b.c` from outside `a.b` runs `a/b/__init__.py` first, which
    is how a package facade closes a circle that no import statement shows."""
    found: set[str] = set()
    for module in graph.find_modules_directly_imported_by(importer):
        found.add(module)
        parts = module.split(".")
        for end in range(1, len(parts)):
            package = ".".join(parts[:end])
            if not (importer == package or importer.startswith(f"{package}.")):
                found.add(package)
    return sorted(found)


def circles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm, iterative)."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(f"{package}."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(imported_by(graph, root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c.startswith(package)), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(imported_by(graph, child))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_check_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert circles(graph, "pkg") == [["pkg.a", "pkg.b"]]


def test_the_check_finds_a_circle_closed_by_a_package_facade() -> None:
    """The circle issue 10 found: snapshots took a lease from imports.coordination, which ran
    imports/__init__.py, which loaded the pipeline, which (through preview) imported snapshots."""
    graph = grimp.ImportGraph()
    for module in ("app", "app.snapshots", "app.imports", "app.imports.coordination", "app.imports.pipeline"):
        graph.add_module(module)
    graph.add_import(importer="app.snapshots", imported="app.imports.coordination")
    graph.add_import(importer="app.imports", imported="app.imports.pipeline")  # the facade
    graph.add_import(importer="app.imports.pipeline", imported="app.snapshots")
    assert circles(graph, "app") == [["app.imports", "app.imports.pipeline", "app.snapshots"]]
    # A package importing its own modules (a re-export) closes none: they are inside it.
    graph.add_import(importer="app.imports.pipeline", imported="app.imports.coordination")
    assert circles(graph, "app") == [["app.imports", "app.imports.pipeline", "app.snapshots"]]


def test_the_product_has_no_import_circle() -> None:
    graph = grimp.build_graph("segments_app")
    assert "segments_app.imports.pipeline" in graph.modules
    assert circles(graph, "segments_app") == []


def test_no_product_module_is_longer_than_a_person_reads_whole() -> None:
    """A module over ~650 lines holds more than one concern (issue 10): split it by concern. The models
    are the exception: one app's models live together, as Django expects."""
    product = Path(__file__).resolve().parents[1] / "segments_app"
    long = {
        str(path.relative_to(product)): lines
        for path in product.rglob("*.py")
        if "migrations" not in path.parts
        and path.name != "models.py"
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert long == {}


def test_no_test_module_imports_another() -> None:
    """What tests share lives in tests/factories.py (and conftest's fixtures): a test module that
    imports another runs that one's module-level code, and ties them so one cannot change alone."""
    suite = Path(__file__).resolve().parent
    borrowing = sorted(
        str(path.relative_to(suite))
        for path in suite.rglob("test_*.py")
        if any(_imports_a_test_module(node) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
    )
    assert borrowing == []


def _imports_a_test_module(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        named = [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
    elif isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        return False
    return any(name.startswith("tests.") and name.split(".")[-1].startswith("test_") for name in named)
