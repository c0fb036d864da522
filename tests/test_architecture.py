"""The import rules that keep the house in order (ARCHITECTURE.md), checked on the source.

- `contract/` imports only the standard library: both wings import it, so it must not pull
  in either of them (or numpy, Keras, FastAPI).
- `backend/` never imports `training/` (the server installs and runs without TensorFlow;
  what it shares with training lives in `contract/`).
- `training/` imports `backend/` in one place only: `training/cli.py`, the composition root
  of the `fer-hybrid` command line, which mounts `backend.cli.serve`.
- `training/` is arranged by stage, one package each, layered bottom to top in `STAGES`: a
  stage imports its own modules and the stages before it, never a later stage, the commands
  or the CLI. Only `cli.py` (and the package's docstring) sits at training/'s top level.
- No import circle anywhere. Imports inside functions count: a lazy load is still a
  dependency, and a circle through one works only as long as nobody moves the import.

The graph is read with `ast` by `tests/import_graph.py`, which also prints the numbers of the
house (modules, lines, the longest import chain).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from import_graph import ROOT, find_circle, graph, imports, longest_chain, modules

#: training/'s stages, bottom to top: each may import itself and the stages before it.
STAGES = ("core", "data", "models", "fit", "ensemble", "export", "bench", "evaluate",
          "robustness", "explain", "bundle", "gpu", "campaign")
#: Above every stage: the command line. It may import any stage.
TOP = ("training", "training.cli", "training.commands")


def _modules() -> dict[str, Path]:
    return modules(ROOT)


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    return imports(name, path, top_level_only=top_level_only)


def _stage(name: str) -> str | None:
    """The stage a training module belongs to; None for the command line above them."""
    if name in TOP or name.startswith("training.commands."):
        return None
    return name.split(".")[1]


def layering_violations(mods: dict[str, Path]) -> list[str]:
    """Every import of a training module that goes up the stages (or to the command line)."""
    rank = {stage: i for i, stage in enumerate(STAGES)}
    edges = graph({n: p for n, p in mods.items() if n.split(".")[0] == "training"})
    found = []
    for name, targets in sorted(edges.items()):
        stage = _stage(name)
        if stage is None:
            continue
        if stage not in rank:
            found.append(f"{name}: not in a declared stage")
            continue
        for target in sorted(targets):
            other = _stage(target)
            if other is None or rank.get(other, len(STAGES)) > rank[stage]:
                found.append(f"{name} imports {target} ({other or 'the command line'} is "
                             f"above {stage})")
    return found


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


def test_training_is_arranged_by_stage():
    top = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert top == ["__init__.py", "cli.py"], "a training module outside the stages: " + str(top)
    packages = {p.parent.name for p in (ROOT / "training").glob("*/__init__.py")}
    assert packages == {*STAGES, "commands"}
    for stage in STAGES:  # each says what it does and what it may import
        doc = (ROOT / "training" / stage / "__init__.py").read_text()
        assert doc.startswith('"""') and "import" in doc, stage


def test_stages_import_only_downwards():
    assert layering_violations(_modules()) == []


def test_no_import_circle():
    mods = _modules()
    circle = find_circle(graph(mods))
    assert circle is None, "import circle: " + " -> ".join(circle)


def _copy_of_training(tmp_path: Path) -> Path:
    """A copy of training/'s sources to break on purpose."""
    shutil.copytree(ROOT / "training", tmp_path / "training",
                    ignore=shutil.ignore_patterns("checkpoints", "harness", "__pycache__"))
    return tmp_path


def _inject(root: Path, module: str, line: str) -> None:
    """Append a function that imports `line` to `module` of the copy (as a lazy load would)."""
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n\ndef _injected():\n    {line}\n")


def test_the_checks_fail_on_an_injected_circle(tmp_path):
    """The real tree passes; the same tree with one import inside a function that closes a
    circle (and goes up a stage) fails both checks."""
    root = _copy_of_training(tmp_path)
    assert find_circle(graph(modules(root, ("training",)))) is None
    assert layering_violations(modules(root, ("training",))) == []

    # the circle the move broke: the split names' module importing the split loaders
    _inject(root, "training.core.splits", "from training.data.splits import load_splits")
    mods = modules(root, ("training",))
    circle = find_circle(graph(mods))
    assert circle is not None and {"training.core.splits", "training.data.splits"} <= set(circle)
    assert any(v.startswith("training.core.splits imports training.data.splits")
               for v in layering_violations(mods))
    # module-level imports alone would not see it
    assert find_circle(graph(mods, top_level_only=True)) is None


def test_a_circle_inside_one_stage_fails_too(tmp_path):
    """Layering allows a stage to import itself; the circle check still catches a loop there."""
    root = _copy_of_training(tmp_path)
    assert "training.fit.trainer" in graph(modules(root, ("training",)))["training.fit.batches"]
    _inject(root, "training.fit.trainer", "from training.fit.batches import TrainBatches")
    mods = modules(root, ("training",))
    assert layering_violations(mods) == []
    circle = find_circle(graph(mods))
    assert circle is not None and set(circle) == {"training.fit.trainer", "training.fit.batches"}


@pytest.mark.parametrize("injected", [
    "from training.commands.train import train",  # a stage reaching for the command line
    "import training.campaign.campaign",  # a stage reaching up to the top stage
])
def test_an_upward_import_fails(tmp_path, injected):
    root = _copy_of_training(tmp_path)
    _inject(root, "training.evaluate.scorer", injected)
    assert [v for v in layering_violations(modules(root, ("training",)))
            if v.startswith("training.evaluate.scorer imports")]


def test_longest_chain_follows_imports():
    edges = {"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": set()}
    assert longest_chain(edges) == ["a", "b", "c", "d"]


def test_the_checks_see_the_project():
    """Guard against a check passing because it read nothing."""
    modules = _modules()
    assert {"contract", "contract.manifest", "backend.app", "training.cli",
            "training.core.runs"} <= set(modules)
    assert "backend.cli" in _imports("training.cli", modules["training.cli"],
                                     top_level_only=True)


def test_architecture_md_draws_the_stages_in_order():
    """ARCHITECTURE.md's drawing lists the stage folders top to bottom, as STAGES orders them."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    drawing = text.split("## training/", 1)[1].split("```")[1]
    drawn = re.findall(r"^  ([a-z]+)/ ", drawing, flags=re.M)
    assert drawn == list(reversed(STAGES))
