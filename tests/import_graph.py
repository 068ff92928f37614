"""The graph of bench's own imports, read statically from the source.

Every ``import bench...`` / ``from bench... import`` counts, at module level or
inside a function (a function-level import closes a cycle as surely as a
top-level one, only later); imports under ``if TYPE_CHECKING:`` do not (they never
run). An edge points from the importing module to the module imported (for
``from bench.x import y``: ``bench.x.y`` when that is a module, else ``bench.x``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# Top to bottom: a package may import its own layer and the layers below it. "bench" is
# the package itself: its __init__ holds the version and names the API lazily (no imports).
LAYERS: list[tuple[str, ...]] = [
    ("cli", "__main__", "api"),
    ("claims",),
    ("report", "export", "compare", "listing"),
    ("sweeps",),
    ("training", "tracking"),
    ("diagnostics", "diagnoses"),
    ("model", "tasks"),
    (
        "bench",
        "config",
        "records",
        "run",
        "io",
        "redact",
        "validation",
        "wandb_file",
        "wandb_settings",
        "extras",
    ),
]
Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first import}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of every runtime import of ``bench`` in ``source``."""
    found: list[tuple[str, int]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":  # only its else branch runs
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((a.name, node.lineno) for a in node.names if _ours(a.name))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            if _ours(base):
                found.extend((f"{base}.{a.name}", node.lineno) for a in node.names)

    Visitor().visit(ast.parse(source))
    return found


def _ours(name: str) -> bool:
    return name == "bench" or name.startswith("bench.")


def build_graph(root: Path = ROOT) -> Graph:
    """Every module of ``bench/`` and the bench modules it imports."""
    paths = {module_name(p, root): p for p in sorted((root / "bench").rglob("*.py"))}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in paths:
                return ".".join(parts[:i])
        return None

    graph: Graph = {}
    for module, path in paths.items():
        edges = graph.setdefault(module, {})
        for name, line in imports_of(path.read_text(), module, path.name == "__init__.py"):
            target = resolve(name)
            if target is not None and target != module:
                edges.setdefault(target, line)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    """``bench.sweeps.worker`` -> ``sweeps``; ``bench.records`` -> ``records``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: Graph, layers: list[tuple[str, ...]] = LAYERS) -> list[str]:
    """``importer -> imported (line N)`` for each import of a higher layer, or of a package
    no layer names."""
    rank = {p: i for i, layer in enumerate(layers) for p in layer}
    found = []
    for a, edges in sorted(graph.items()):
        for b, line in sorted(edges.items()):
            pa, pb = package_of(a), package_of(b)
            if pa == pb or a == "bench":
                continue
            if pa not in rank or pb not in rank or rank[pb] < rank[pa]:
                found.append(f"{a} -> {b} (line {line})")
    return found
