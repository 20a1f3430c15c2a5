"""talos-init's modules import one another without a cycle.

The walker reads every import statement anywhere in a module (top level, inside functions, under
``TYPE_CHECKING``) with :mod:`ast`, resolves relative imports, and counts ``from pkg import x``
as an import of ``pkg`` (its ``__init__``) and, when ``x`` is a module, of ``pkg.x``. Importing a
submodule is not counted as importing its parent packages (a package's ``__init__`` naming its
own submodules is no cycle).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import talos_init

Graph = dict[str, set[str]]


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every module of ``package`` under the source root ``src``."""
    found: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, node: ast.stmt) -> list[str]:
    """The module names one import statement of module ``name`` (file ``path``) may load."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = name.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(src: Path, package: str) -> Graph:
    """Module -> the modules of ``package`` it imports (anywhere in its file)."""
    files = module_files(src, package)
    graph: Graph = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps.update(d for d in _imported(name, path, node) if d in files and d != name)
        graph[name] = deps
    return graph


def _path(graph: Graph, start: str, members: set[str]) -> list[str]:
    """One cycle through ``start`` inside the strongly connected ``members``."""
    came: dict[str, str] = {}
    todo = [start]
    while todo:
        here = todo.pop(0)
        for nxt in sorted(graph[here] & members):
            if nxt == start:
                cycle = [here]
                while cycle[-1] != start:
                    cycle.append(came[cycle[-1]])
                return [start, *reversed(cycle[:-1]), start]
            if nxt not in came:
                came[nxt] = here
                todo.append(nxt)
    raise AssertionError(f"{start} is on no cycle")  # pragma: no cover - members are an SCC


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``a -> b -> a``) per strongly connected group of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; talos-init's depth is far below the recursion limit
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_path(graph, min(group), group) for group in groups)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))


def test_talos_init_has_no_import_cycle() -> None:
    src = Path(talos_init.__file__).parent.parent
    graph = import_graph(src, "talos_init")
    assert "talos_init.node" in graph and "talos_init.api.server" in graph  # it read the tree
    found = cycles(graph)
    assert not found, "import cycles in talos_init:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_node_imports_nothing_of_the_api() -> None:
    src = Path(talos_init.__file__).parent.parent
    graph = import_graph(src, "talos_init")
    api = {name for name in graph if name == "talos_init.api" or name.startswith("talos_init.api.")}
    assert not graph["talos_init.node"] & api
    assert "talos_init.api.lifecycle" in graph["talos_init.wiring"]


def test_the_walker_reports_a_cycle_through_function_and_type_checking_imports(
    tmp_path: Path,
) -> None:
    """Negative control: a synthetic package whose cycle hides in a function and under
    TYPE_CHECKING, through a relative import; a second one through a package's __init__."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": """
            def later():
                from pkg import b
        """,
            "pkg/b.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .a import later
        """,
            "pkg/c.py": "import pkg.a\n",  # on no cycle
            "pkg/sub/__init__.py": "from . import d\n",
            "pkg/sub/d.py": "from pkg.sub import nothing_here\n",  # the package's __init__
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [
        ["pkg.a", "pkg.b", "pkg.a"],
        ["pkg.sub", "pkg.sub.d", "pkg.sub"],
    ]


def test_the_walker_sees_no_cycle_in_a_chain(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import x\n",  # a package naming its submodule
            "pkg/a.py": "from pkg.b import y\n",
            "pkg/b.py": "import os\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": set()}
    assert cycles(graph) == []
