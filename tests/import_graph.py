"""Our import graph, read from the source with `ast` (nothing is imported): the architecture
test's checks and the numbers that say how the house reads.

Every import counts, at module level or inside a function: a function's import is a lazy load,
but it is still a dependency a reader follows and a circle Python resolves only by luck of
timing.

    python tests/import_graph.py [ROOT]   # the numbers for ROOT (default: this checkout)

prints the modules at training/'s top level, lines per module (median, max), the longest
import chain, and the walk of `fer-hybrid robustness TARGET`: the modules its command reaches
and how many of its imports climb back up a folder (a module in training/data/ importing one
at training/'s top level climbs one).
"""

from __future__ import annotations

import ast
import statistics
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "backend", "training")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted name -> source file of every module of `packages` under `root` (the committed
    checkpoints are data, not code)."""
    return {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
            if "checkpoints" not in p.parts}


def imports(name: str, path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names `path` imports (for `from m import x`: m and m.x, as x may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph(mods: dict[str, Path], *, top_level_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself left out)."""
    return {name: {m for m in imports(name, path, top_level_only=top_level_only)
                   if m in mods} - {name}
            for name, path in mods.items()}


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None: a depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                circle = visit(nxt)
                if circle:
                    return circle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(edges):
        if name not in state:
            circle = visit(name)
            if circle:
                return circle
    return None


def longest_chain(edges: dict[str, set[str]]) -> list[str]:
    """The longest path of imports (a module importing one importing one ...); needs no circle."""

    @cache
    def below(node: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for nxt in sorted(edges[node]):
            chain = below(nxt)
            if len(chain) > len(best):
                best = chain
        return (node, *best)

    return list(max((below(n) for n in sorted(edges)), key=len, default=()))


def walk(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` reaches through its imports, itself included."""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges[node])
    return seen


def folder_depth(path: Path, root: Path) -> int:
    """How many folders down from `root` a module's file lives (training/cli.py: 1)."""
    return len(path.relative_to(root).parts) - 1


def climbs(edges: dict[str, set[str]], reached: set[str], mods: dict[str, Path],
           root: Path) -> list[tuple[str, str]]:
    """The imports within `reached` that go to a module in a shallower folder."""
    return sorted((a, b) for a in reached for b in edges[a]
                  if folder_depth(mods[b], root) < folder_depth(mods[a], root))


def numbers(root: Path = ROOT) -> dict:
    mods = modules(root, ("training",))
    edges = graph(mods)
    lines = [len(p.read_text().splitlines()) for p in mods.values()]
    top = sorted(p.name for p in (root / "training").glob("*.py"))
    reached = walk(edges, "training.commands.robustness")
    return {
        "modules": len(mods),
        "top_level_modules": top,
        "lines_median": statistics.median(lines),
        "lines_max": max(lines),
        "circle": find_circle(edges),
        "longest_chain": longest_chain(edges) if find_circle(edges) is None else None,
        "robustness_walk": sorted(reached),
        "robustness_climbs": climbs(edges, reached, mods, root),
    }


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    n = numbers(root)
    print(f"training/ modules: {n['modules']}; at its top level: {len(n['top_level_modules'])} "
          f"({', '.join(n['top_level_modules'])})")
    print(f"lines per module: median {n['lines_median']}, max {n['lines_max']}")
    if n["circle"]:
        print("import circle:", " -> ".join(n["circle"]))
    else:
        print(f"longest import chain: {len(n['longest_chain'])} modules: "
              + " -> ".join(n["longest_chain"]))
    print(f"`fer-hybrid robustness TARGET` reaches {len(n['robustness_walk'])} modules, "
          f"{len(n['robustness_climbs'])} imports climb back up a folder")
    for a, b in n["robustness_climbs"]:
        print(f"  climb: {a} -> {b}")
