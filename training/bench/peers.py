"""The peers' pinned npm packages, fetched into a user cache at bench time (never committed).

Each package is one npm tarball: downloaded with urllib from the registry (no npm needed),
checked against the sha512 `integrity` pinned below (what package-lock.json would pin), and
only the files the harness pages use are extracted, into
`$XDG_CACHE_HOME/fer-hybrid/peers/<name>-<version>/` (default `~/.cache/...`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from training.core.errors import FerError

REGISTRY = "https://registry.npmjs.org"
# Both peers bundle TF.js 4.22.0 (their dist/tfjs.version.js); its wasm binaries are served from
# the page's vendored copy of the same version, so every tool runs the same wasm build.
TFJS_VERSION = "4.22.0"


@dataclass(frozen=True)
class Peer:
    key: str  # what --peers names
    package: str  # npm name
    version: str
    integrity: str  # sha512-<base64>, as the registry's dist.integrity says
    files: tuple[str, ...]  # paths inside the tarball's package/ folder
    licence: str

    @property
    def tarball_url(self) -> str:
        base = self.package.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{self.package}/-/{base}-{self.version}.tgz"

    @property
    def dirname(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}"


PEERS: dict[str, Peer] = {
    "human": Peer(
        "human", "@vladmandic/human", "3.3.6",
        "sha512-Nr5mPfq1gQ+uKeXY5uM3Fj8UxvF5CEh2s6txM5wRThqaW0mF9huooOuZSrT8hhGho0hGaXLFdAwfD/2+teCv6A==",
        ("dist/human.esm.js", "models/blazeface.json", "models/blazeface.bin",
         "models/emotion.json", "models/emotion.bin", "LICENSE", "package.json"),
        "MIT"),
    # The original face-api.js on npm (0.22.2) ships no weights; the maintained fork ships the
    # original face-api.js weights with a TF.js 4 build.
    "faceapi": Peer(
        "faceapi", "@vladmandic/face-api", "1.7.15",
        "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
        ("dist/face-api.esm.js",
         "model/tiny_face_detector_model-weights_manifest.json", "model/tiny_face_detector_model.bin",
         "model/face_expression_model-weights_manifest.json", "model/face_expression_model.bin",
         "LICENSE", "package.json"),
        "MIT"),
}


class PeerUnavailable(FerError):
    """The package is neither cached nor downloadable (offline, registry down)."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fer-hybrid" / "peers"


def parse_peers(text: str | None) -> list[Peer]:
    if text is None or text.strip() in ("", "all"):
        return list(PEERS.values())
    if text.strip() == "none":
        return []
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        raise FerError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)} "
                       f"(comma-separated), all or none")
    return [PEERS[k] for k in keys]


def check_integrity(data: bytes, integrity: str) -> None:
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise FerError(f"unsupported integrity algorithm {algo!r}")
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != expected:
        raise FerError(f"integrity mismatch: expected sha512-{expected}, got sha512-{got} "
                       f"(a tampered or truncated download); nothing was extracted")


def extract(data: bytes, files: tuple[str, ...], dest: Path) -> None:
    """The listed files of an npm tarball (all under package/) into dest; no other path is
    ever written (member names are matched exactly, so '..' cannot escape)."""
    wanted = {f"package/{f}": f for f in files}
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    found = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            rel = wanted.get(member.name)
            if rel is None or not member.isfile():
                continue
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
            found.add(rel)
    missing = sorted(set(files) - found)
    if missing:
        raise FerError(f"the tarball lacks {', '.join(missing)}")
    (tmp / ".complete").write_text("ok\n")
    tmp.rename(dest)


def download(url: str, timeout: float = 60.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "fer-hybrid-bench"})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return res.read()


def ensure(peer: Peer, root: Path | None = None, log=print, fetch=download) -> Path:
    """The peer's extracted folder, downloading it the first time; PeerUnavailable offline."""
    dest = (root or cache_root()) / peer.dirname
    if (dest / ".complete").is_file():
        return dest
    log(f"  downloading {peer.package}@{peer.version} from {REGISTRY} ...")
    try:
        data = fetch(peer.tarball_url)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise PeerUnavailable(f"{peer.package}@{peer.version} is not cached in {dest.parent} and "
                              f"could not be downloaded from {REGISTRY} ({err}); connect to the "
                              f"internet once, or leave it out with --peers") from None
    check_integrity(data, peer.integrity)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # an incomplete earlier extraction
        import shutil

        shutil.rmtree(dest)
    extract(data, peer.files, dest)
    log(f"  {peer.package}@{peer.version}: {len(data) / 2**20:.1f} MiB tarball verified, "
        f"{len(peer.files)} files in {dest}")
    return dest
