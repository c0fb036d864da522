"""Real datasets from ../shared/data (skipped when absent). The parse cache keeps reruns fast."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.realdata

# shared/data/README.md, "Verified counts"
OFFICIAL = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],  # Training 28,709
    "val": [467, 56, 496, 895, 653, 415, 607],  # PublicTest 3,589
    "test": [491, 55, 528, 879, 594, 416, 626],  # PrivateTest 3,589
}


@pytest.fixture(scope="module")
def real_splits(shared_data):
    from training.data import load_splits

    return load_splits(data_dir=shared_data, aux=("ckplus", "jaffe"))


def test_official_fer2013_counts(real_splits):
    for split, counts in OFFICIAL.items():
        ds = real_splits[split]
        fer = ds.source == "fer2013"
        assert np.bincount(ds.y[fer], minlength=7).tolist() == counts
        assert ds.x.shape[1:] == (48, 48) and ds.x.dtype == np.uint8
    assert len(real_splits["train"]) - (real_splits["train"].source == "fer2013").sum() > 0


def test_aux_sets_real(real_splits):
    train = real_splits["train"]
    ck = train.y[train.source == "ckplus"]
    ja = train.y[train.source == "jaffe"]
    # CK+: anger 135, disgust 177, fear 75, happy 207, sadness 84, surprise 249 (contempt 54 dropped)
    assert np.bincount(ck, minlength=7).tolist() == [135, 177, 75, 207, 84, 249, 0]
    # JAFFE: angry 30, disgust 29, fear 32, happy 31, sad 31, surprise 30, neutral 30
    assert np.bincount(ja, minlength=7).tolist() == [30, 29, 32, 31, 31, 30, 30]
    assert train.meta["duplicates_dropped"] == 0


def test_stats_cli_real(shared_data):
    from training.commands.data import data_app

    result = CliRunner().invoke(
        data_app, ["stats", "--data-dir", str(shared_data), "--aux", "none"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    train = next(line for line in lines if line.startswith("train"))
    assert train.split()[2:] == [
        "3,995",
        "436",
        "4,097",
        "7,215",
        "4,830",
        "3,171",
        "4,965",
        "28,709",
    ]
    assert next(line for line in lines if line.startswith("all")).split()[-1] == "35,887"


@pytest.mark.slow
def test_first_parse_is_fast_and_cache_matches(shared_data, tmp_path, monkeypatch):
    """An uncached parse of the 301 MB CSV stays well under a minute and equals the cached arrays."""
    import time

    from training.data.fer2013 import load_fer2013_csv

    cached = load_fer2013_csv(shared_data / "fer2013.csv.gz")
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    t = time.perf_counter()
    fresh = load_fer2013_csv(shared_data / "fer2013.csv.gz")
    first = time.perf_counter() - t
    assert first < 60, f"first parse took {first:.1f}s"
    t = time.perf_counter()
    again = load_fer2013_csv(shared_data / "fer2013.csv.gz")
    assert time.perf_counter() - t < first
    for arrays in (fresh, again):
        np.testing.assert_array_equal(arrays.x, cached.x)
        np.testing.assert_array_equal(arrays.y, cached.y)
        np.testing.assert_array_equal(arrays.usage, cached.usage)
