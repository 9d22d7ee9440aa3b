"""The layering docs/architecture.md describes, checked on the source: no import cycle, the edges (bench, ui) never
import the command line, no module over 500 lines, and no global seeding inside the library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dragnext"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The dragnext modules ``path`` imports at module level (imports inside functions are deferred on purpose
    and cannot make a cycle at import time)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        nodes = [node]
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks do not run
            continue
        for item in nodes:
            if isinstance(item, ast.Import):
                found.update(alias.name for alias in item.names if alias.name.startswith("dragnext"))
            elif isinstance(item, ast.ImportFrom):
                if item.level:
                    base = package.split(".")
                    base = base[: len(base) - (item.level - 1)]
                    target = ".".join(base + ([item.module] if item.module else []))
                else:
                    target = item.module or ""
                if not target.startswith("dragnext"):
                    continue
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in item.names)
    known = {module_name(p) for p in MODULES}
    return {m for m in found if m in known and m != name}


GRAPH = {module_name(path): imported_modules(path) for path in MODULES}


def test_the_import_graph_is_read():
    assert "dragnext.geometry" in GRAPH["dragnext.editor"]
    assert "dragnext.cli.common" in GRAPH["dragnext.cli.edit"]


def test_no_import_cycle():
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(name)
        for other in sorted(GRAPH[name]):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if not other.startswith(name + "."):
                visit(other)
        visiting.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


@pytest.mark.parametrize("edge", ["dragnext.bench", "dragnext.ui"])
def test_the_edges_do_not_import_the_command_line(edge):
    """(``python -m dragnext.ui`` is an entry point of its own: its ``__main__`` runs the command.)"""
    offenders = {name: sorted(m for m in imports if m == "dragnext.cli" or m.startswith("dragnext.cli."))
                 for name, imports in GRAPH.items()
                 if (name == edge or name.startswith(edge + ".")) and not name.endswith(".__main__")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_is_over_500_lines():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_the_library_never_seeds_the_global_generator_outside_its_one_scoped_helper():
    """Randomness travels as explicit generators and seeds; torch.initial_seed and torch.manual_seed are never
    used (``models.base.seeded_construction`` seeds a *forked* RNG for constructors that take no generator)."""
    pattern = re.compile(r"torch\.(initial_seed|manual_seed|seed)\(|np\.random\.seed\(|random\.seed\(")
    offenders = [f"{module_name(p)}:{i}" for p in MODULES
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
