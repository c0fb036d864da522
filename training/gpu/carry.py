"""What travels to the GPU machine, and whether it fits.

A device call sends the working tree (tracked files and untracked files git does not ignore)
plus the ignored paths it names in `carry`, 64 MiB together; a call over the limit is refused.
The GPU machine has JAX but no Keras, so Keras and the two packages it needs that the
machine's image lacks travel as wheels for its Python (3.12, x86-64 manylinux), pinned to the
versions this project tests with: a `.keras` file must mean the same on both machines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from training.core.errors import FerError

CARRY_LIMIT = 64 * 2**20  # bytes per device call: working tree + carried paths
DEVICE_PYTHON = "3.12"
# What the GPU machine's image lacks of Keras' requirements (the device README's package list
# has absl-py, h5py, ml-dtypes, numpy, packaging and rich already).
DEVICE_WHEELS = ("keras", "namex", "optree")
# pip matches manylinux tags exactly, so name the ones these wheels are published with.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def pinned_versions(constraints: str | Path, names: Iterable[str] = DEVICE_WHEELS) -> dict[str, str]:
    """`name -> version` for `names` from a pip constraints file (`name==version` lines)."""
    path = Path(constraints)
    try:
        text = path.read_text()
    except OSError as err:
        raise FerError(f"cannot read the pinned versions in {path}: {err.strerror}") from None
    pins = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[_canonical(m.group(1))] = m.group(2)
    missing = [n for n in names if _canonical(n) not in pins]
    if missing:
        raise FerError(f"{path} pins no version of {', '.join(missing)}; the GPU machine must get "
                       f"the exact versions the tests use (see README 'Test')")
    return {n: pins[_canonical(n)] for n in names}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_for(folder: Path, name: str, version: str) -> Path | None:
    """The wheel of `name==version` already in `folder`, if any."""
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for p in sorted(folder.glob("*.whl")):
        parts = p.name.split("-")
        if len(parts) >= 2 and parts[0].lower() == stem and parts[1] == version:
            return p
    return None


def download_command(dest: Path, specs: Iterable[str]) -> list[str]:
    """pip download of `specs` for the device's Python and platform, no dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", DEVICE_PYTHON, "--implementation", "cp", "-d", str(dest), "-q"]
    for tag in PLATFORMS:
        cmd += ["--platform", tag]
    return cmd + list(specs)


def fetch_wheels(dest: str | Path, versions: dict[str, str], *,
                 run: Callable = subprocess.run) -> list[Path]:
    """The device wheels in `dest`, downloading those not there yet; stale versions removed
    (two versions of one package in the folder would stop the whole install there)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    missing = [f"{n}=={v}" for n, v in versions.items() if wheel_for(dest, n, v) is None]
    if missing:
        proc = run(download_command(dest, missing), capture_output=True, text=True)
        if proc.returncode != 0:
            raise FerError(f"pip could not download {', '.join(missing)} for Python "
                           f"{DEVICE_PYTHON}: {(proc.stderr or proc.stdout).strip()[-600:]}")
    wheels = []
    for n, v in versions.items():
        w = wheel_for(dest, n, v)
        if w is None:
            raise FerError(f"no wheel of {n}=={v} in {dest} after pip download")
        wheels.append(w)
        stem = w.name.split("-")[0]
        for other in dest.glob(f"{stem}-*.whl"):
            if other != w:
                other.unlink()
    return wheels


@dataclass
class CarryReport:
    """Bytes a device call would send: the working tree and each carried path."""

    tree_bytes: int
    carried: dict[str, int]
    largest: list[tuple[str, int]] = field(default_factory=list)  # biggest tree files

    @property
    def total(self) -> int:
        return self.tree_bytes + sum(self.carried.values())

    @property
    def fits(self) -> bool:
        return self.total <= CARRY_LIMIT

    def lines(self) -> list[str]:
        out = [f"working tree {mib(self.tree_bytes)}"]
        out += [f"{name} {mib(size)}" for name, size in self.carried.items()]
        out.append(f"total {mib(self.total)} of {mib(CARRY_LIMIT)}"
                   + ("" if self.fits else "  ** over the limit **"))
        return out

    def over_limit_message(self) -> str:
        big = ", ".join(f"{p} ({mib(s)})" for p, s in self.largest[:6])
        return (f"a device call would carry {mib(self.total)}, over its {mib(CARRY_LIMIT)} "
                f"({'; '.join(self.lines()[:-1])}). The largest files of the working tree: "
                f"{big}. Leave what the GPU session does not need behind with --park PATH "
                f"(e.g. --park training/checkpoints; `fer-hybrid gpu unpark` afterwards)")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def tree_files(repo: str | Path) -> list[Path]:
    """Files a device call sends as the working tree: tracked + untracked not ignored, those
    on disk now (the device README: "a copy of your working tree")."""
    repo = Path(repo)
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], cwd=repo, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise FerError(f"{repo} is not a git checkout (a device call sends a git working tree): "
                       f"{err}") from None
    names = sorted({n for n in proc.stdout.decode().split("\0") if n})
    return [repo / n for n in names if (repo / n).is_file() and not (repo / n).is_symlink()]


def path_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure_carry(repo: str | Path, carried: Iterable[str | Path]) -> CarryReport:
    """What a device call from `repo` carrying the ignored paths `carried` would send."""
    repo = Path(repo)
    files = tree_files(repo)
    sizes = [(str(p.relative_to(repo)), p.stat().st_size) for p in files]
    carried_sizes = {}
    for c in carried:
        p = repo / c
        carried_sizes[str(Path(c))] = path_bytes(p) if p.exists() else 0
    sizes.sort(key=lambda t: -t[1])
    return CarryReport(tree_bytes=sum(s for _, s in sizes), carried=carried_sizes,
                       largest=sizes[:10])


PARKED = ".carry/parked.txt"  # what `park` took out of the index, for `unpark`
_EXCLUDE = Path(".git") / "info" / "exclude"


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FerError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def parked(repo: str | Path) -> list[str]:
    path = Path(repo) / PARKED
    return path.read_text().split() if path.is_file() else []


def park(repo: str | Path, paths: Iterable[str]) -> list[str]:
    """Leave tracked `paths` out of what device calls send, without touching the files.

    A call sends tracked files and untracked files git does not ignore; so each path leaves
    the index (`git rm --cached`, the files stay on disk) and is ignored through
    .git/info/exclude, which is never committed. `unpark` undoes both. While parked, the
    paths show as staged deletions: commit nothing until then."""
    repo = Path(repo)
    done = parked(repo)
    for p in paths:
        rel = Path(p).as_posix().strip("/")
        if not (repo / rel).exists():
            raise FerError(f"--park {p}: no such path in {repo}")
        if rel in done:
            continue
        _git(repo, "rm", "-r", "-q", "--cached", "--", rel)
        exclude = repo / _EXCLUDE
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a") as fh:
            fh.write(f"/{rel}/\n" if (repo / rel).is_dir() else f"/{rel}\n")
        done.append(rel)
    (repo / PARKED).parent.mkdir(exist_ok=True)
    (repo / PARKED).write_text("".join(f"{d}\n" for d in done))
    return done


def unpark(repo: str | Path) -> list[str]:
    """Put the parked paths back in the index and stop ignoring them."""
    repo = Path(repo)
    done = parked(repo)
    if not done:
        return []
    _git(repo, "reset", "-q", "--", *done)
    exclude = repo / _EXCLUDE
    if exclude.is_file():
        drop = {f"/{d}/" for d in done} | {f"/{d}" for d in done}
        keep = [line for line in exclude.read_text().splitlines() if line not in drop]
        exclude.write_text("".join(f"{line}\n" for line in keep))
    (repo / PARKED).unlink()
    return done
