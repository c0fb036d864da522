"""`fer-hybrid bench` (training/bench/): the pure parts, and one quick run in headless Chromium.

The quick run uses the shipped models/ and synthetic crops for the accuracy path (no dataset
needed); the peers come from the npm registry (or the user cache): when neither has them, the
peer test skips with "npm registry unreachable", a reason tests/no_silent_skips.py allows.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from e2e_support import require_browser

from contract import LABELS
from training.bench import peers as P
from training.bench.labels import column_order, to_project_order
from training.core.errors import FerError

REPO = Path(__file__).resolve().parents[1]
FACEAPI_LABELS = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]


# ---------------------------------------------------------------- labels
def test_faceapi_order_maps_by_name():
    probs = np.eye(7)  # row i: all mass on face-api's class i
    mapped = to_project_order(probs, FACEAPI_LABELS)
    for i, name in enumerate(FACEAPI_LABELS):
        expected = {"fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}.get(name, name)
        assert LABELS[mapped[i].argmax()] == expected


def test_project_order_is_the_identity():
    assert column_order(list(LABELS)) == list(range(7))


def test_unmappable_labels_are_refused():
    with pytest.raises(FerError):
        column_order(["neutral", "happy", "sad", "angry", "fearful", "disgusted", "contempt"])
    with pytest.raises(FerError):
        column_order(["neutral", "happy", "sad", "angry", "fearful", "disgusted", "bored"])


# ---------------------------------------------------------------- peers
def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _peer(data: bytes) -> P.Peer:
    return P.Peer("toy", "@toy/pkg", "1.0.0", _integrity(data), ("dist/a.js", "model/m.bin"), "MIT")


def test_ensure_extracts_only_the_listed_files_once(tmp_path):
    data = _tarball({"dist/a.js": b"js", "model/m.bin": b"\0\1", "README.md": b"x",
                     "../escape.txt": b"no"})
    calls = []
    fetch = lambda url: calls.append(url) or data  # noqa: E731
    dest = P.ensure(_peer(data), tmp_path, log=lambda *_: None, fetch=fetch)
    assert calls == ["https://registry.npmjs.org/@toy/pkg/-/pkg-1.0.0.tgz"]
    assert dest == tmp_path / "toy-pkg-1.0.0"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == \
        [".complete", "dist/a.js", "model/m.bin"]
    assert not (tmp_path / "escape.txt").exists()
    assert P.ensure(_peer(data), tmp_path, log=lambda *_: None, fetch=fetch) == dest
    assert len(calls) == 1  # cached


def test_a_tampered_tarball_is_rejected_and_nothing_is_extracted(tmp_path):
    good = _tarball({"dist/a.js": b"js", "model/m.bin": b"\0\1"})
    bad = _tarball({"dist/a.js": b"evil", "model/m.bin": b"\0\1"})
    with pytest.raises(FerError, match="integrity mismatch"):
        P.ensure(_peer(good), tmp_path, log=lambda *_: None, fetch=lambda url: bad)
    assert list(tmp_path.iterdir()) == []


def test_offline_and_not_cached_is_a_clear_error(tmp_path):
    import urllib.error

    def offline(url):
        raise urllib.error.URLError("no route to host")

    with pytest.raises(P.PeerUnavailable, match="not cached .* could not be downloaded"):
        P.ensure(P.PEERS["human"], tmp_path, log=lambda *_: None, fetch=offline)


def test_pinned_peers_and_cache_location(monkeypatch, tmp_path):
    assert P.PEERS["human"].tarball_url == \
        "https://registry.npmjs.org/@vladmandic/human/-/human-3.3.6.tgz"
    assert P.PEERS["faceapi"].package == "@vladmandic/face-api"
    assert all(p.integrity.startswith("sha512-") for p in P.PEERS.values())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert P.cache_root() == tmp_path / "fer-hybrid" / "peers"
    assert [p.key for p in P.parse_peers("faceapi")] == ["faceapi"]
    assert P.parse_peers("none") == [] and len(P.parse_peers("all")) == 2
    with pytest.raises(FerError, match="unknown peer"):
        P.parse_peers("human,clmtrackr")


# ---------------------------------------------------------------- the command
def test_cli_refuses_an_unknown_peer_before_any_work(repo_root):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "training.cli", "bench", "--peers", "clmtrackr"],
                         cwd=repo_root, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2
    assert "error: unknown peer(s) clmtrackr; choose from human, faceapi" in out.stderr


def test_cli_help_names_the_requirements():
    from typer.testing import CliRunner

    from training.cli import app

    text = " ".join(CliRunner().invoke(app, ["bench", "--help"], terminal_width=200).output.split())
    assert "fer-hybrid[train,test]" in text and "/usr/bin/chromium" in text
    assert "--quick" in text and "--no-accuracy" in text and "--peers" in text
    assert "--cpu-throttle" in text and "Emulation.setCPUThrottlingRate" in text


def test_cpu_throttle_rates():
    from training.bench.run import CPU_THROTTLE, parse_throttle

    assert parse_throttle(None) == CPU_THROTTLE == (4.0,)
    assert parse_throttle("2,6,2") == (2.0, 6.0) and parse_throttle("none") == ()
    for bad in ("1", "0.5", "fast"):
        with pytest.raises(FerError, match="--cpu-throttle"):
            parse_throttle(bad)


def test_no_dataset_means_latency_only_unless_a_data_option_was_given(monkeypatch, tmp_path):
    from training.bench.run import BenchSettings, load_crops

    monkeypatch.setenv("FER_HYBRID_DATA", str(tmp_path))
    s = BenchSettings(models_dir=REPO / "models", out=tmp_path, peers=[], command="test")
    x, y, why, _ = load_crops(s, log=lambda *_: None)
    assert x is None and y is None and why.startswith("FER2013 not found")
    s.data_dir = tmp_path
    with pytest.raises(FerError):
        load_crops(s, log=lambda *_: None)


# ---------------------------------------------------------------- our page's frame times
def test_new_frame_times_takes_what_the_window_gained():
    from training.bench.latency import new_frame_times

    window = [10.0, 11.0, 12.0, 13.0]
    assert new_frame_times(window, 100, 102) == [12.0, 13.0]
    assert new_frame_times(window, 102, 102) == []
    assert new_frame_times(window, 0, 500) == window  # more than the window holds: all of it


# ---------------------------------------------------------------- report
def _lat(median, faces, size=3_000_000):
    return {"median_ms": median, "p90_ms": median * 1.5, "frames": 50, "faces_median": faces,
            "faces_min": faces, "method": "test", "download_bytes": size}


def _result():
    acc = lambda a, b: {"n": 3589, "accuracy": a, "accuracy_flip_tta": b}  # noqa: E731
    return {
        "created": "2026-01-01T00:00:00Z", "command": "fer-hybrid bench",
        "environment": {"chromium": "Chromium 1", "cpu": "CPU", "cpus": 2, "load_average": "0.1"},
        "settings": {"seconds": 20, "warmup": 3, "fps": 30, "backend": "wasm", "crops": "all 3589"},
        "ours_members": ["sepnet"],
        "latency": {"ours": {"1": _lat(40, 1), "5": _lat(50, 5)},
                    "ours_noreuse": {"1": _lat(30, 1), "5": _lat(75, 5)},
                    "human": {"1": _lat(20, 1, 4_000_000), "5": _lat(100, 5, 4_000_000)},
                    "human_nocache": {"1": _lat(45, 1, 4_000_000), "5": _lat(120, 5, 4_000_000)},
                    "faceapi": {"1": _lat(60, 1, 2_000_000), "5": _lat(150, 4, 2_000_000)}},
        "accuracy": {"ours": acc(0.663, 0.6765), "ours_raw": acc(0.66, 0.67),
                     "human": acc(0.666, 0.674), "faceapi": acc(0.589, 0.602)},
    }


def test_table_from_a_hand_built_result():
    from training.bench.report import markdown, table

    lines = table(_result()).splitlines()
    assert len(lines) == 2 + 6
    ours, every, raw, human, nocache, faceapi = lines[2:]
    assert "| fer-hybrid (this page) |" in ours and "(sepnet)" in ours
    assert "| 40.0 (60.0) | 50.0 (75.0) | 1.00x / 1.00x | 1/5 | 66.3% | 67.7% |" in ours
    assert "| - | - | - | - / - | - | 66.0% | 67.0% |" in raw
    assert "| 0.50x / 2.00x |" in human and "| 66.6% | 67.4% |" in human
    # every-frame rows compare with each other: face-api.js has no cache
    assert "| 30.0 (45.0) | 75.0 (112.5) | 1.00x / 1.00x |" in every and "as fer-hybrid (this page)" in every
    assert "as Human 3.3.6" in nocache and "3.81 MiB" in nocache and "| 1.50x / 1.60x |" in nocache
    assert faceapi.startswith("| face-api.js weights via @vladmandic/face-api 1.7.15 |")
    assert "| 2.00x / 2.00x | 1/4 | 58.9% | 60.2% |" in faceapi
    assert "3589 FER2013 PrivateTest crops" in markdown(_result())


def test_phone_class_rows_in_the_report(tmp_path):
    """The CPU-throttled runs get their own table (slow-down against the unthrottled run, like
    for like at that rate) and their own panel in the figure."""
    from training.bench.report import markdown, throttled_table, write

    r = _result()
    r["latency_throttled"] = {"4": {"ours": {"1": _lat(20, 1), "5": _lat(150, 5)},
                                    "human": {"1": _lat(120, 1), "5": _lat(300, 5)}}}
    lines = throttled_table(r, "4").splitlines()
    assert len(lines) == 2 + 2
    ours, human = lines[2:]
    assert ours == "| fer-hybrid (this page) | 20.0 (30.0) | 150.0 (225.0) | 0.50x / 3.00x | 1.00x / 1.00x |"
    assert human.startswith("| Human 3.3.6, default video caching | 120.0 (180.0) | 300.0 (450.0) | 6.00x / 3.00x |")
    assert human.endswith("| 6.00x / 2.00x |")
    md = markdown(r)
    assert "Phone class: the same pages with Chromium's CPU throttled x4" in md
    assert "Phone class" not in markdown(_result())  # a run without throttling: no such section
    png = write(r, tmp_path)["png"]
    from PIL import Image

    wide = Image.open(png).size[0]
    assert wide > Image.open(write(_result(), tmp_path / "plain")["png"]).size[0]  # one panel more


def test_report_without_accuracy_says_why(tmp_path):
    from training.bench.report import markdown, write

    r = {**_result(), "accuracy": None, "accuracy_skipped": "FER2013 not found"}
    assert "Accuracy: not measured (FER2013 not found)" in markdown(r)
    files = write(r, tmp_path)
    assert {p.name for p in files.values()} == {"bench.json", "bench.md", "bench.png"}
    assert files["png"].read_bytes()[:4] == b"\x89PNG"


def test_five_face_frame():
    from training.bench.video import FRAME, face_frame

    one, five = face_frame(1), face_frame(5)
    assert one.shape == five.shape == (*FRAME, 3)
    assert (five != 40).any(axis=2).mean() > 0.3  # faces cover a good part of the frame
    with pytest.raises(ValueError):
        face_frame(7)


# ---------------------------------------------------------------- CPU throttling
@pytest.mark.browser
def test_cpu_throttling_slows_the_page_down():
    """The phone-class rows rest on this: the same JavaScript takes several times as long once
    the page is throttled x4 (it used to end at once: a detached DevTools session drops it)."""
    import statistics

    require_browser()
    from training.bench.browser import browser
    from training.bench.latency import cpu_throttle

    work = ("() => { const t0 = performance.now(); let x = 0;"
            " for (let i = 0; i < 2e7; i++) x = (x + i * 7) % 1000003;"
            " return [performance.now() - t0, x]; }")
    with browser() as b:
        page = b.new_page()
        ms = lambda: statistics.median(page.evaluate(work)[0] for _ in range(3))  # noqa: E731
        plain = ms()
        cpu_throttle(page)(4)
        slow = ms()
    assert slow > 2 * plain, (plain, slow)


# ---------------------------------------------------------------- one quick run in Chromium
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A --quick-sized run on the shipped models: ours plus every peer we can get; the accuracy
    path on 28 synthetic crops (the code path, not a number)."""
    require_browser()
    from training.bench import run as R

    available, missing = [], {}
    for peer in P.PEERS.values():
        try:
            P.ensure(peer, log=lambda *_: None)
            available.append(peer)
        except P.PeerUnavailable as err:
            missing[peer.key] = str(err)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (28, 48, 48)).astype(np.uint8)
    y = np.arange(28) % 7
    settings = R.BenchSettings(models_dir=REPO / "models", out=tmp_path_factory.mktemp("bench"),
                               peers=available, command="test", seconds=1.5, warmup=1.0,
                               quick=True)
    orig = R.load_crops
    R.load_crops = lambda s, log=print: (x, y, "28 synthetic crops", None)
    try:
        result = R.run(settings, log=lambda *_: None)
    finally:
        R.load_crops = orig
    return result, missing, settings.out




@pytest.mark.browser
@pytest.mark.slow
def test_quick_run_measures_our_page(quick_run):
    from training.bench.report import write

    result, _, out = quick_run
    for faces in ("1", "5"):
        r = result["latency"]["ours"][faces]
        assert r["frames"] >= 3 and r["median_ms"] > 0 and r["faces_median"] == int(faces)
        assert r["backend"] == "wasm"
    assert result["latency"]["ours"]["1"]["download_bytes"] > 1_000_000
    # The phone-class row: the same page timed again with the CPU throttled x4.
    assert result["settings"]["cpu_throttle"] == [4.0]
    for faces in ("1", "5"):
        slow = result["latency_throttled"]["4"]["ours"][faces]
        assert slow["frames"] >= 1 and slow["median_ms"] > 0 and slow["backend"] == "wasm"
    for key in ("ours", "ours_raw"):
        a = result["accuracy"][key]
        assert a["n"] == 28 and 0 <= a["accuracy"] <= 1
    files = write(result, out)
    assert "fer-hybrid (this page)" in files["md"].read_text()
    assert "CPU throttled x4" in files["md"].read_text()


@pytest.mark.browser
@pytest.mark.slow
def test_quick_run_measures_the_peers(quick_run):
    result, missing, _ = quick_run
    if missing:
        pytest.skip("npm registry unreachable and peers not cached: " + "; ".join(missing.values()))
    for key in ("human", "human_nocache", "faceapi"):
        for faces in ("1", "5"):
            r = result["latency"][key][faces]
            assert r["frames"] >= 2 and r["faces_median"] >= 1, (key, faces, r)
            assert r["info"]["backend"] == "wasm" and r["info"]["wasm"]["multithread"] is False
            slow = result["latency_throttled"]["4"][key][faces]
            assert slow["frames"] >= 1 and slow["median_ms"] > 0, (key, faces, slow)
    assert result["latency"]["faceapi"]["5"]["faces_median"] == 5
    for key in ("human", "faceapi"):
        assert result["accuracy"][key]["n"] == 28


def test_accuracy_scores_carry_ferplus_agreement_and_the_report_shows_it(tmp_path):
    """Each tool's crops scored against the same FER+ votes
    (`training.data.ferplus_agreement.ferplus_scores`), plain and flip TTA; bench.md gets one table
    of it, or one line saying why not."""
    from test_ensemble import _votes_for

    from training.bench.accuracy import score
    from training.bench.report import markdown, write
    from training.data.ferplus_agreement import ferplus_scores

    y = np.arange(27) % 7
    votes = _votes_for(y)  # majority = y on every scored row (every 9th is "not a face")
    p = np.eye(7)[np.where(np.arange(27) < 9, (y + 1) % 7, y)]  # the first 9 crops wrong
    p_flip = np.eye(7)[y]
    s = score(p, p_flip, y, votes)
    assert s["accuracy"] == pytest.approx(18 / 27)
    assert s["ferplus"] == ferplus_scores(p, (p + p_flip) / 2, votes)
    assert s["ferplus"]["plain"]["n"] == 24 and s["ferplus"]["plain"]["majority_agreement"] == pytest.approx(16 / 24)
    assert "ferplus" not in score(p, p_flip, y)

    r = _result()
    fp = {"ties": "a tie for the most votes counts as agreement with any tied class",
          "plain": {"n": 3519, "majority_agreement": 0.7012, "mean_vote_share": 0.6034},
          "tta": {"n": 3519, "majority_agreement": 0.7123, "mean_vote_share": 0.6145}}
    for key in ("ours", "human"):
        r["accuracy"][key]["ferplus"] = fp
    r["accuracy"]["faceapi"]["ferplus"] = {"note": "not computed: other rows"}
    md = markdown(r)
    assert "Agreement with people (FER+ ten-annotator votes) on the same crops: the 3519 crops" in md
    assert "| fer-hybrid (this page) | 70.12% | 71.23% | 60.34% | 61.45% |" in md
    assert "| Human 3.3.6, default video caching | 70.12% |" in md
    assert "| face-api.js weights via @vladmandic/face-api 1.7.15 | - | - | - | - |" in md
    assert "| fer-hybrid, no low-light step | - | - | - | - |" in md  # measured without votes

    r = _result()
    r["settings"]["ferplus"] = "no FER+ votes file: FER2013 accuracy only"
    assert ("FER+ ten-annotator votes) on the same crops: not measured (no FER+ votes file: "
            "FER2013 accuracy only).") in markdown(r)
    assert "FER+" not in markdown({**_result(), "accuracy": None, "accuracy_skipped": "x"})
    write(r, tmp_path)  # bench.json / .md / .png still write


def test_a_crop_sample_keeps_its_own_votes(tmp_path):
    """--crops N: the FER+ votes are sampled with the same indices as the crops."""
    from test_ensemble import write_fer_with_votes

    from training.bench.run import BenchSettings, load_crops

    test_y = np.arange(63) % 7
    data = write_fer_with_votes(tmp_path / "data", test_y)
    s = BenchSettings(models_dir=REPO / "models", out=tmp_path, peers=[], command="test",
                      data_dir=data, crops=21)
    log = []
    x, y, what, votes = load_crops(s, log=log.append)
    assert len(y) == len(votes.votes) == 21 and "stratified sample" in what
    row = x[:, 0, 0].astype(int)  # crop i of the full split has grey level i
    assert (test_y[row] == y).all() and (votes.seven.argmax(1)[votes.scored] == y[votes.scored]).all()
    assert any("FER+ votes:" in line for line in log)
    (data / "fer2013new.csv").unlink()
    x, y, _, votes = load_crops(s, log=log.append)
    assert votes is None and len(y) == 21 and "FER2013 accuracy only" in log[-2]
