"""One bench run: peers fetched, videos written, servers up, latency then accuracy, reports."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from contract import utc_now
from training.bench import peers as P
from training.core.errors import FerError

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
HARNESS = Path(__file__).resolve().parent / "harness"
FPS = 30
QUICK = {"seconds": 3.0, "warmup": 2.0, "crops": 140}
# The phone-class rows: Chromium's CPU slowed down this many times (a mid-range phone's core is
# several times slower than a desktop's; x4 is what Lighthouse's mobile emulation uses).
CPU_THROTTLE = (4.0,)


def parse_throttle(text: str | None) -> tuple[float, ...]:
    """--cpu-throttle: "4", "2,6" -> rates > 1; "none" -> () (no phone-class rows)."""
    if text is None or text.strip() == "":
        return CPU_THROTTLE
    if text.strip() == "none":
        return ()
    try:
        rates = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise FerError(f"--cpu-throttle {text!r}: comma-separated numbers (e.g. 4 or 2,6) or none") from None
    if any(r <= 1 for r in rates):
        raise FerError(f"--cpu-throttle {text!r}: every rate must be above 1 (1 is the unthrottled run)")
    return tuple(dict.fromkeys(rates))


@dataclass
class BenchSettings:
    models_dir: Path
    out: Path
    peers: list[P.Peer]
    command: str
    seconds: float = 20.0
    warmup: float = 3.0
    rounds: int = 1
    web_dir: Path | None = None  # another copy of the page to measure (default web/)
    accuracy: bool = True
    crops: int | None = None  # None: the whole PrivateTest
    data_dir: Path | None = None
    fer2013: Path | None = None
    ferplus: Path | None = None  # FER+ votes (default: found next to the FER2013 file)
    quick: bool = False
    cpu_throttle: tuple[float, ...] = CPU_THROTTLE  # () = no phone-class rows


def shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def environment() -> dict:
    from training.bench.browser import chromium_version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"chromium": chromium_version(), "cpu": cpu, "cpus": os.cpu_count(),
            "load_average": load, "platform": platform.platform(),
            "python": platform.python_version()}


def tfjs_folder() -> Path:
    folder = WEB / "vendor" / f"tfjs-{P.TFJS_VERSION}"
    if not (folder / "tfjs-backend-wasm-simd.wasm").is_file():
        raise FerError(f"{folder} has no tfjs-backend-wasm-simd.wasm: the peers bundle TF.js "
                       f"{P.TFJS_VERSION} and take its wasm binaries from the page's vendored copy")
    return folder


def load_crops(s: BenchSettings, log=print):
    """PrivateTest (or a stratified sample) and the same crops' FER+ votes -> (x, y, what,
    votes): x and y None (and `what` saying why) when the dataset is absent and no data option
    was given (then the bench measures latency only); votes None when the votes file is absent
    (`training.data.ferplus.votes_for_split`; one logged line says so)."""
    from training.data.ferplus import FerPlusVotes, votes_for_split
    from training.data.splits import split_loader, stratified_indices

    try:
        x, y = split_loader(s.data_dir, s.fer2013)("test")
    except FerError as err:
        if s.data_dir or s.fer2013:
            raise
        return None, None, f"FER2013 not found: {err}", None
    votes, note = votes_for_split("test", data_dir=s.data_dir, fer2013=s.fer2013,
                                  ferplus=s.ferplus)
    log(f"  {note}")
    what = f"all {len(y)}"
    if s.crops is not None and s.crops < len(y):
        idx = stratified_indices(y, s.crops, 0)
        if votes is not None and len(votes.votes) == len(y):  # else ferplus_scores says why
            votes = FerPlusVotes(votes.votes[idx], votes.usage[idx])
        x, y = x[idx], y[idx]
        what = f"a stratified sample (seed 0) of {len(y)}"
    log(f"  PrivateTest: {what} crops")
    return x, y, what, votes


def run(s: BenchSettings, log=print) -> dict:
    from training.bench import accuracy, latency, servers, video

    manifest = s.models_dir / "manifest.json"
    if not manifest.is_file():
        raise FerError(f"no manifest.json in {s.models_dir}: run `fer-hybrid export` first")
    members = [m["name"] for m in json.loads(manifest.read_text())["members"]]
    routes = {"/harness/": HARNESS, "/tfjs/": tfjs_folder()}
    for peer in s.peers:
        routes[f"/peer/{peer.key}/"] = P.ensure(peer, log=log)
    x = y = votes = None
    skipped = "--no-accuracy"
    if s.accuracy:
        x, y, crops_what, votes = load_crops(s, log)
        if x is None:
            skipped = crops_what
            log(f"  accuracy skipped: {skipped}")
    result: dict = {
        "created": utc_now(), "command": s.command, "environment": environment(),
        "settings": {"seconds": s.seconds, "warmup": s.warmup, "rounds": s.rounds, "fps": FPS,
                     "quick": s.quick, "web_dir": shown(s.web_dir or WEB),
                     "cpu_throttle": list(s.cpu_throttle),
                     "faces": [1, 5], "models_dir": shown(s.models_dir),
                     "backend": f"TF.js {P.TFJS_VERSION} wasm backend, single-threaded with SIMD, "
                                "for every tool (headless Chromium, no cross-origin isolation)",
                     "crops": crops_what if x is not None else None,
                     "ferplus": None if x is None else (
                         "FER+ votes (fer2013new.csv) of the same crops" if votes is not None
                         else "no FER+ votes file: FER2013 accuracy only")},
        "ours_members": members,
        "peers": {p.key: {"package": p.package, "version": p.version, "integrity": p.integrity,
                          "licence": p.licence, "tarball": p.tarball_url} for p in s.peers},
    }
    keys = [p.key for p in s.peers]
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        tmp = Path(tmp)
        videos = {n: video.write_face_video(tmp / f"faces{n}.y4m", n, fps=FPS) for n in (1, 5)}
        with servers.backend(s.models_dir.resolve(), tmp, s.web_dir) as ours, \
                servers.static(routes) as peer:
            by_rate = latency.run_latency(videos, ours, peer, keys, s.seconds, s.warmup, s.rounds,
                                          log, throttles=s.cpu_throttle)
            result["latency"] = by_rate.pop("1")
            # {rate: {config: {faces: result}}}: the same runs with the CPU throttled
            result["latency_throttled"] = by_rate
            if x is not None:
                result["accuracy"] = accuracy.run_accuracy(x, y, ours, peer, keys, log,
                                                           votes=votes)
    if x is None:
        result["accuracy"] = None
        result["accuracy_skipped"] = skipped
    return result
