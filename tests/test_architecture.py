"""The import rules that keep the wings apart (ARCHITECTURE.md), checked on the source.

- `contract/` imports only the standard library: both wings import it, so it must not pull
  in either of them (or numpy, Keras, FastAPI).
- `backend/` never imports `training/` (the server installs and runs without TensorFlow;
  what it shares with training lives in `contract/`).
- `training/` imports `backend/` in one place only: `training/cli.py`, the composition root
  of the `fer-hybrid` command line, which mounts `backend.cli.serve`.
- No module-level import circle anywhere (imports inside functions are deliberate lazy
  loads and do not count).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "backend", "training")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "checkpoints" not in p.parts}


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of the modules `path` imports (the module itself for `from m import x`)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
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


def _project(found: set[str], modules: dict[str, Path]) -> set[str]:
    return {m for m in found if m in modules}


def test_contract_imports_only_the_standard_library():
    for name, path in _modules().items():
        if name.split(".")[0] != "contract":
            continue
        for imported in _imports(name, path, top_level_only=False):
            top = imported.split(".")[0]
            assert top in sys.stdlib_module_names or top in ("contract", "__future__"), \
                f"{path.relative_to(ROOT)} imports {imported}"


def test_backend_never_imports_training():
    for name, path in _modules().items():
        if name.split(".")[0] != "backend":
            continue
        bad = sorted(m for m in _imports(name, path, top_level_only=False)
                     if m.split(".")[0] == "training")
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_training_imports_backend_only_in_the_cli():
    offenders = {}
    for name, path in _modules().items():
        if name.split(".")[0] != "training" or name == "training.cli":
            continue
        bad = sorted(m for m in _imports(name, path, top_level_only=False)
                     if m.split(".")[0] == "backend")
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_no_module_level_import_circle():
    modules = _modules()
    graph = {name: _project(_imports(name, path, top_level_only=True), modules) - {name}
             for name, path in modules.items()}
    # Depth-first search for a back edge; report the circle it closes.
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                circle = visit(nxt)
                if circle:
                    return circle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            circle = visit(name)
            assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_checks_see_the_project():
    """Guard against a check passing because it read nothing."""
    modules = _modules()
    assert {"contract", "contract.manifest", "backend.app", "training.cli",
            "training.core.runs"} <= set(modules)
    assert "backend.cli" in _imports("training.cli", modules["training.cli"],
                                     top_level_only=True)
