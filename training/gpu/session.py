"""One GPU session on the device: every member of the plan trains at once, then the bundle.

Runs on the GPU machine (`python3 -m training.cli gpu session PLAN --out $OUT`), where there
is JAX but no TensorFlow, and nothing survives the call: the run folders live in $TMPDIR (/tmp) and
what comes back is the bundle copied to `$OUT`.

Why one process per member, all started together: the small models are host-bound (a Keras
step costs ~1 ms of Python around far less GPU work), so a single process would leave the
GPU idle most of the time, and a call that trained the members one after another would not
fit the seven of them in its minutes. JAX takes 75 % of the GPU's memory per process unless
told otherwise, so each process gets an equal share; a shared compilation cache lets two
members of one architecture compile once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.core.errors import FerError
from training.gpu.plan import BUNDLE_MINUTES, GpuPlan

GPU_MEMORY_SHARE = 0.9  # of the device's memory, split over the members


def member_env(n_members: int, base: dict | None = None) -> dict:
    """Environment of one member process: JAX, a share of GPU memory, the compile cache."""
    env = dict(os.environ if base is None else base)
    env.update({
        "KERAS_BACKEND": "jax",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{GPU_MEMORY_SHARE / max(1, n_members):.3f}",
        "JAX_COMPILATION_CACHE_DIR": env.get("JAX_COMPILATION_CACHE_DIR", "/tmp/fer-jax-cache"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def check_devices(python: str, env: dict, require_gpu: bool, printer: Callable) -> str:
    """JAX's device list, from a short child process (so this one never holds GPU memory)."""
    code = "import jax; print(jax.default_backend(), jax.devices())"
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise FerError(f"JAX does not start on this machine: {proc.stderr.strip()[-800:]}")
    line = proc.stdout.strip().splitlines()[-1]
    printer(f"JAX devices: {line}")
    if require_gpu and not line.startswith("gpu"):
        raise FerError("JAX sees no GPU here; refusing to spend the call training on the CPU "
                       "(the plan has require_gpu; `gpu prepare --no-require-gpu` for a test)")
    return line


@dataclass
class MemberProcess:
    name: str
    proc: subprocess.Popen
    log: Path

    def last_epoch_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output yet)"
        for line in reversed(lines):
            if line.startswith("epoch "):
                return line.split("  ETA")[0]
        return lines[-1][:120] if lines else "(no output yet)"


def run_session(plan: GpuPlan, out: str | Path, *, repo: str | Path = ".",
                python: str = sys.executable, printer: Callable = print,
                poll_s: float = 30.0) -> dict:
    """Train every member of `plan` at once, bundle the run folders, copy the first call's
    parts to `out`; returns {"members": {name: returncode}, "bundle": folder, "calls": [[file,
    ...], ...]}."""
    t0 = time.monotonic()
    repo = Path(repo).resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (repo / plan.pack).is_file():
        raise FerError(f"{plan.pack}: the data pack is not here; carry .carry with the call "
                       f"(the plan's pack path is relative to the repository root)")
    runs = plan.runs_path
    runs.mkdir(parents=True, exist_ok=True)
    env = member_env(len(plan.members))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH")) if p)
    check_devices(python, env, plan.require_gpu, printer)

    procs = []
    for m in plan.members:
        log = runs / f"{m.name}.out"
        fh = open(log, "w")
        proc = subprocess.Popen(plan.member_command(m, python), cwd=repo, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
        fh.close()  # the child holds its own copy
        procs.append(MemberProcess(m.name, proc, log))
    printer(f"started {len(procs)} members at once: {', '.join(p.name for p in procs)}; "
            f"each stops within {plan.train_minutes:g} min")

    # Members stop themselves (--max-minutes); this is the backstop for one that hangs, so the
    # bundle still gets its minute.
    hard_stop = t0 + 60 * (plan.call_minutes - BUNDLE_MINUTES - 0.25)
    next_report = time.monotonic() + poll_s
    while any(p.proc.poll() is None for p in procs):
        if time.monotonic() > hard_stop:
            for p in procs:
                if p.proc.poll() is None:
                    printer(f"{p.name}: still running at the session's hard stop; killed")
                    p.proc.kill()
            break
        if time.monotonic() >= next_report:
            elapsed = (time.monotonic() - t0) / 60
            for p in procs:
                state = "running" if p.proc.poll() is None else f"exit {p.proc.returncode}"
                printer(f"[{elapsed:4.1f} min] {p.name} ({state}): {p.last_epoch_line()}")
            next_report += poll_s
        time.sleep(0.5)
    codes = {p.name: p.proc.wait() for p in procs}
    for p in procs:
        printer(f"{p.name}: exit {codes[p.name]}; {p.last_epoch_line()}")
        if codes[p.name] != 0:
            tail = p.log.read_text(errors="replace").splitlines()[-15:]
            printer("    " + "\n    ".join(tail))
        run_dir = runs / p.name
        if run_dir.is_dir():
            shutil.copyfile(p.log, run_dir / "console.txt")  # travels in the bundle

    trained = [runs / name for name in codes if (runs / name / "best.keras").is_file()]
    if not trained:
        raise FerError("no member saved a best.keras; nothing to bring back (see the logs above)")
    bundle = plan.bundle_path
    shutil.rmtree(bundle, ignore_errors=True)  # one bundle per session: its manifest is found
    cmd = [python, "-m", "training.cli", "runs", "bundle", *map(str, trained), "--out",
           str(bundle)]
    printer("bundling: " + " ".join(cmd[2:]))
    proc = subprocess.run(cmd, cwd=repo, env=env, text=True, capture_output=True)
    printer(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise FerError(f"runs bundle failed: {proc.stderr.strip()[-800:]}")
    calls = copy_first_call(bundle, out)
    printer(f"copied call 1's {len(calls[0])} files to {out}")
    for i, names in enumerate(calls[1:], 2):
        printer(f"call {i} (make it AT ONCE: the machine goes back after 30 s idle): "
                f"cp {bundle}/{{{','.join(names)}}} $OUT")
    printer(f"session done in {(time.monotonic() - t0) / 60:.1f} min")
    return {"members": codes, "bundle": str(bundle), "calls": calls}


def copy_first_call(bundle: Path, out: Path) -> list[list[str]]:
    """Copy the files the bundle's manifest puts in call 1 to `out`; all calls' file names."""
    manifests = sorted(bundle.glob("fer-bundle-*.json"))
    if len(manifests) != 1:
        raise FerError(f"{bundle}: expected one bundle manifest, found {len(manifests)}")
    calls = [c["files"] for c in json.loads(manifests[0].read_text())["calls"]]
    for name in calls[0]:
        shutil.copyfile(bundle / name, out / name)
    return calls
