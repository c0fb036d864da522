"""Manifest schema: validation, atomic write, read-back, byte counts against the disk.

Pure Python (no TensorFlow): members are fake model.json + shard files.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from contract import LABELS
from contract.manifest import (
    SCHEMA,
    Manifest,
    ManifestError,
    Member,
    manifest_from_dict,
    member_bytes,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def _fake_member(root: Path, name: str, shard_bytes: int = 1000) -> Member:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "group1-shard1of1.bin").write_bytes(b"\0" * shard_bytes)
    doc = {
        "format": "graph-model",
        "modelTopology": {"node": []},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": []}],
    }
    (folder / "model.json").write_text(json.dumps(doc))
    return Member(
        name=name,
        architecture="baseline_cnn",
        path=f"{name}/model.json",
        quantization="uint8",
        bytes=member_bytes(folder / "model.json"),
        params=1234,
        metrics={"test_accuracy": 0.5},
    )


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    members = [_fake_member(root, "a"), _fake_member(root, "b", 2048)]
    manifest = Manifest(
        members=members,
        metrics={"split": "PrivateTest", "accuracy_float": 0.6, "accuracy_quantized": 0.59},
        notes="test",
        created="2026-01-01T00:00:00Z",
    )
    write_manifest(manifest, root / "manifest.json")
    return root


def _doc(models_dir: Path) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


def test_written_manifest_matches_contract(models_dir: Path):
    doc = _doc(models_dir)
    assert doc["schema"] == SCHEMA
    assert doc["labels"] == list(LABELS)
    assert doc["input"] == {
        "height": 48, "width": 48, "channels": 1, "color": "grayscale",
        "dtype": "float32", "range": [0, 255], "layout": "NHWC",
    }
    assert doc["ensemble"] == {"method": "soft_voting", "tta_flip": True}
    assert [m["path"] for m in doc["members"]] == ["a/model.json", "b/model.json"]
    assert set(doc) == {"schema", "created", "labels", "input", "ensemble", "members", "metrics",
                        "placeholder", "notes"}
    for m in doc["members"]:
        assert set(m) >= {"name", "architecture", "path", "format", "weight", "quantization",
                          "bytes", "params", "metrics"}
    assert validate_manifest(doc, models_dir) == []


def test_bytes_equal_files_on_disk(models_dir: Path):
    for m in _doc(models_dir)["members"]:
        folder = models_dir / Path(m["path"]).parent
        assert m["bytes"] == sum(p.stat().st_size for p in folder.iterdir())


def test_read_manifest_round_trip(models_dir: Path):
    manifest = read_manifest(models_dir)  # a folder is accepted too
    assert [m.name for m in manifest.members] == ["a", "b"]
    assert manifest.to_dict()["members"] == _doc(models_dir)["members"]
    assert manifest_from_dict(_doc(models_dir)).labels == list(LABELS)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("labels"), "labels"),
        (lambda d: d.update(labels=[]), "labels"),
        (lambda d: d.update(labels=["a", "a"]), "labels"),
        (lambda d: d.pop("members"), "members"),
        (lambda d: d.update(members=[]), "members"),
        (lambda d: d["members"][0].update(path="/abs/model.json"), "relative"),
        (lambda d: d["members"][0].update(path="../a/model.json"), ".."),
        (lambda d: d["members"][0].update(path="a\\model.json"), "separators"),
        (lambda d: d["members"][0].update(path="https://x.org/a/model.json"), "URL"),
        (lambda d: d["members"][0].update(path="a/weights.bin"), "model.json"),
        (lambda d: d["members"][1].update(name="a"), "duplicate"),
        (lambda d: d["members"][0].update(weight=0), "weight"),
        (lambda d: d["members"][0].update(quantization="int4"), "quantization"),
        (lambda d: d["members"][0].update(format="tfjs_layers_model"), "format"),
        (lambda d: d["members"][0].update(bytes=-1), "bytes"),
        (lambda d: d.update(schema="other@2"), "schema"),
        (lambda d: d["ensemble"].update(method="max"), "ensemble.method"),
        (lambda d: d["input"].update(layout="NCHW"), "layout"),
        (lambda d: d["metrics"].update(accuracy_float=1.5), "accuracy_float"),
        (lambda d: d.pop("metrics"), "metrics"),
        (lambda d: d.update(placeholder="yes"), "placeholder"),
    ],
)
def test_schema_rejects(models_dir: Path, mutate, message):
    doc = copy.deepcopy(_doc(models_dir))
    mutate(doc)
    problems = validate_manifest(doc)
    assert problems and any(message in p for p in problems), problems


def test_disk_checks(models_dir: Path):
    doc = _doc(models_dir)
    doc["members"][0]["bytes"] += 1
    assert any("bytes" in p for p in validate_manifest(doc, models_dir))
    assert validate_manifest(doc) == []  # without base_dir the disk is not consulted

    (models_dir / "b" / "group1-shard1of1.bin").unlink()
    problems = validate_manifest(_doc(models_dir), models_dir)
    assert any("missing weight files" in p for p in problems)

    doc = _doc(models_dir)
    doc["members"][0]["path"] = "nope/model.json"
    assert any("does not exist" in p for p in validate_manifest(doc, models_dir))


def test_read_manifest_errors_are_fer_errors(models_dir: Path, tmp_path: Path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path / "empty")
    (models_dir / "a" / "model.json").unlink()
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(models_dir / "manifest.json")
    assert read_manifest(models_dir, check_files=False).members[0].name == "a"
    (models_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(models_dir)


def test_write_manifest_refuses_invalid_and_keeps_old(models_dir: Path):
    before = (models_dir / "manifest.json").read_text()
    bad = _doc(models_dir)
    bad["members"] = []
    with pytest.raises(ManifestError, match="members"):
        write_manifest(bad, models_dir / "manifest.json")
    assert (models_dir / "manifest.json").read_text() == before
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".manifest-")]


def test_manifest_module_does_not_import_tensorflow():
    import subprocess

    code = "import sys, contract.manifest; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


# -------------------------------------------------------------------- variants (issue 17, item 5)


def _add_variant(models_dir: Path, folder: str = "ferplus", **changes) -> dict:
    """A second full manifest in models_dir/<folder>/ (its own member), listed by the top one."""
    root = models_dir / folder
    root.mkdir()
    variant = Manifest(members=[_fake_member(root, "c", 512)], notes="votes",
                       created="2026-01-01T00:00:00Z").to_dict()
    variant.update(changes)
    (root / "manifest.json").write_text(json.dumps(variant))
    doc = _doc(models_dir)
    doc["variants"] = [
        {"id": "fer2013", "title": "FER2013 labels", "description": "the comparable one",
         "manifest": "manifest.json", "default": True},
        {"id": folder, "title": "People's votes (FER+)", "description": "ten annotators",
         "manifest": f"{folder}/manifest.json", "default": False},
    ]
    return doc


def test_variants_valid_and_round_trip(models_dir: Path):
    from contract.manifest import Variant, manifest_variants

    doc = _add_variant(models_dir)
    assert validate_manifest(doc) == [] and validate_manifest(doc, models_dir) == []
    write_manifest(doc, models_dir / "manifest.json")
    manifest = read_manifest(models_dir)
    assert [v.id for v in manifest.variants] == ["fer2013", "ferplus"]
    assert manifest.variants[0] == Variant("fer2013", "FER2013 labels", "manifest.json",
                                           "the comparable one", True)
    assert manifest.to_dict()["variants"] == doc["variants"]
    assert manifest_from_dict(_doc(models_dir)).to_dict()["variants"] == doc["variants"]
    # Each variant is itself a full manifest: what `read_manifest` reads from its folder.
    assert read_manifest(models_dir / "ferplus").members[0].name == "c"
    assert [v.id for v in manifest_variants(models_dir)] == ["fer2013", "ferplus"]


def test_manifest_without_variants_stays_valid_and_unchanged(models_dir: Path):
    from contract.manifest import manifest_variants

    doc = _doc(models_dir)
    assert "variants" not in doc and read_manifest(models_dir).variants == []
    assert "variants" not in read_manifest(models_dir).to_dict()
    assert manifest_variants(models_dir) == []


def test_the_shipped_manifest_validates():
    root = Path(__file__).resolve().parents[1] / "models"
    assert validate_manifest(json.loads((root / "manifest.json").read_text()), root) == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["variants"][1].update(id="fer2013"), "duplicate id"),
        (lambda d: d["variants"][1].update(id="Fer Plus!"), "id"),
        (lambda d: d["variants"][1].update(id="../x"), "id"),
        (lambda d: d["variants"][1].update(manifest="../ferplus/manifest.json"), ".."),
        (lambda d: d["variants"][1].update(manifest="/abs/manifest.json"), "relative"),
        (lambda d: d["variants"][1].update(manifest="https://x.org/manifest.json"), "URL"),
        (lambda d: d["variants"][1].update(manifest="ferplus/other.json"), "manifest.json"),
        (lambda d: d["variants"][1].update(manifest="a/manifest.json"), "member"),
        (lambda d: d["variants"][1].update(manifest="manifest.json"), "subfolder"),
        (lambda d: d["variants"][1].update(default=True), "exactly one default"),
        (lambda d: d["variants"][0].update(default=False), "exactly one default"),
        (lambda d: d["variants"][0].update(manifest="ferplus/manifest.json", default=True)
         or d["variants"][1].update(default=False, manifest="x/manifest.json"), "default"),
        (lambda d: d["variants"][1].update(title=""), "title"),
        (lambda d: d["variants"][1].update(description=3), "description"),
        (lambda d: d["variants"][1].update(default="yes"), "default"),
        (lambda d: d["variants"].append("ferplus"), "object"),
        (lambda d: d.update(variants={"ferplus": "ferplus/manifest.json"}), "list"),
        (lambda d: d.update(variants=[]), "variants"),
    ],
)
def test_variants_rejected(models_dir: Path, mutate, message):
    doc = _add_variant(models_dir)
    mutate(doc)
    problems = validate_manifest(doc)
    assert problems and any(message in p for p in problems), problems


def test_variant_files_are_checked(models_dir: Path):
    doc = _add_variant(models_dir)
    (models_dir / "ferplus" / "c" / "group1-shard1of1.bin").unlink()
    problems = validate_manifest(doc, models_dir)
    assert any("ferplus" in p and "missing weight files" in p for p in problems), problems
    assert validate_manifest(doc) == []  # without base_dir the disk is not consulted
    (models_dir / "ferplus" / "manifest.json").unlink()
    problems = validate_manifest(doc, models_dir)
    assert any("ferplus/manifest.json does not exist" in p for p in problems), problems
    write_manifest(doc, models_dir / "manifest.json")  # checks the document, not the disk
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(models_dir / "manifest.json")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"labels": ["happy", "sad", "angry", "disgust", "fear", "surprise", "neutral"]}, "labels"),
        ({"input": {**Manifest(members=[]).input, "height": 64, "width": 64}}, "input"),
        ({"schema": "other@2"}, "schema"),
        ({"variants": [{"id": "x", "title": "x", "manifest": "manifest.json", "default": True}]},
         "variants of its own"),
    ],
)
def test_variant_must_match_the_top_manifest(models_dir: Path, changes, message):
    doc = _add_variant(models_dir, **changes)
    problems = validate_manifest(doc, models_dir)
    assert any("ferplus" in p and message in p for p in problems), problems


def test_optional_ferplus_block_is_checked(models_dir: Path):
    """metrics.ferplus (FER+ agreement, written by export when the votes are there) is optional;
    when present its shares lie in [0, 1] (or null) and its row counts are whole numbers."""
    doc = _doc(models_dir)
    assert "ferplus" not in doc["metrics"] and validate_manifest(doc, models_dir) == []
    doc["metrics"]["ferplus"] = {
        "of": "the quantised ensemble (what the page runs)", "n": 3519, "rows": 3589,
        "ties": "a tie for the most votes counts as agreement with any tied class",
        "majority_agreement": 0.7, "majority_agreement_tta": 0.71, "mean_vote_share": 0.6,
        "mean_vote_share_tta": None, "fer2013_labels_majority_agreement": 0.6533,
        "fer2013_labels_mean_vote_share": 0.5645,
    }
    assert validate_manifest(doc, models_dir) == []
    assert validate_manifest({**doc, "metrics": {**doc["metrics"], "ferplus": {"note": "x"}}}) == []
    bad = copy.deepcopy(doc)
    bad["metrics"]["ferplus"].update(majority_agreement_tta=71.0, n=-1,
                                     fer2013_labels_mean_vote_share="56 %")
    problems = validate_manifest(bad, models_dir)
    assert "metrics.ferplus.majority_agreement_tta: must be a number in [0, 1] or null" in problems
    assert "metrics.ferplus.n: must be a whole number >= 0" in problems
    assert any("fer2013_labels_mean_vote_share" in p for p in problems) and len(problems) == 3
    bad["metrics"]["ferplus"] = [0.7]
    assert validate_manifest(bad, models_dir) == ["metrics.ferplus: must be an object (or absent)"]
