"""The pieces of `fer-hybrid gpu prepare`: the plan, the wheels, the 64 MiB carry budget.

The whole flow (prepare -> device command -> bundle -> unbundle -> evaluate/export) is
tests/test_gpu_flow.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from training.commands.gpu import device_command
from training.core.errors import FerError
from training.gpu.carry import (
    CARRY_LIMIT,
    fetch_wheels,
    measure_carry,
    pinned_versions,
    wheel_for,
)
from training.gpu.plan import FIRST_SESSION, GpuPlan, make_plan, parse_member


def test_pinned_versions_come_from_the_constraints_file(repo_root, tmp_path):
    pins = pinned_versions(repo_root / "constraints.txt")
    assert pins["keras"] == "3.15.1"  # the version pyproject.toml pins too
    assert set(pins) == {"keras", "namex", "optree"}
    (tmp_path / "c.txt").write_text("keras==3.15.1\nnamex==0.1.0 ; python_version >= '3'\n")
    with pytest.raises(FerError, match="optree"):
        pinned_versions(tmp_path / "c.txt")
    with pytest.raises(FerError, match="cannot read"):
        pinned_versions(tmp_path / "missing.txt")


def _fake_pip(made: list):
    def run(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        for spec in cmd[cmd.index("-q") + 1:]:
            if spec.startswith("--") or spec.startswith("manylinux"):
                continue
            name, version = spec.split("==")
            (dest / f"{name}-{version}-py3-none-any.whl").write_bytes(b"wheel")
            made.append(spec)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_wheels_downloads_only_what_is_missing_and_drops_stale_versions(tmp_path):
    (tmp_path / "keras-3.15.1-py3-none-any.whl").write_bytes(b"old download")
    (tmp_path / "namex-0.0.9-py3-none-any.whl").write_bytes(b"stale")
    made = []
    wheels = fetch_wheels(tmp_path, {"keras": "3.15.1", "namex": "0.1.0"}, run=_fake_pip(made))
    assert made == ["namex==0.1.0"]
    assert [w.name for w in wheels] == ["keras-3.15.1-py3-none-any.whl",
                                        "namex-0.1.0-py3-none-any.whl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [w.name for w in wheels]
    assert wheel_for(tmp_path, "namex", "0.0.9") is None


def test_fetch_wheels_reports_a_failed_download(tmp_path):
    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")
    with pytest.raises(FerError, match="No matching distribution"):
        fetch_wheels(tmp_path, {"keras": "9.9.9"}, run=failing)


def _git_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    (path / ".gitignore").write_text("/.carry/\nruns/\n")
    (path / "tracked.py").write_bytes(b"x" * 1000)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    (path / "untracked.txt").write_bytes(b"y" * 500)  # not ignored: it travels too
    (path / "runs").mkdir()
    (path / "runs" / "big.keras").write_bytes(b"z" * 5000)  # ignored: stays home
    (path / ".carry").mkdir()
    (path / ".carry" / "data.pack").write_bytes(b"p" * 3000)
    return path


def test_carry_counts_the_working_tree_and_the_carried_paths(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    report = measure_carry(repo, [".carry", ".whl"])
    tree = 1000 + 500 + len((repo / ".gitignore").read_bytes())
    assert report.tree_bytes == tree
    assert report.carried == {".carry": 3000, ".whl": 0}
    assert report.total == tree + 3000 and report.fits
    assert report.largest[0] == ("tracked.py", 1000)
    assert "total" in report.lines()[-1]


def test_carry_over_the_limit_names_the_largest_files(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    with open(repo / ".carry" / "data.pack", "wb") as fh:
        fh.truncate(CARRY_LIMIT)  # sparse: 64 MiB on paper only
    report = measure_carry(repo, [".carry"])
    assert not report.fits
    msg = report.over_limit_message()
    assert "over its 64.0 MiB" in msg and "tracked.py" in msg


def test_carry_needs_a_git_checkout(tmp_path):
    with pytest.raises(FerError, match="not a git checkout"):
        measure_carry(tmp_path, [])


def test_the_first_session_plan():
    plan = make_plan(None, pack=".carry/p.pack")
    assert [m.name for m in plan.members] == [s.split(":")[0] for s in FIRST_SESSION]
    assert {m.model for m in plan.members} == {"vgg", "resnet_se", "five_layer", "cnn_lstm",
                                               "sepnet", "baseline_cnn"}
    # The budget: the call less install/bundle time, the schedule less start-up.
    assert 0 < plan.schedule_minutes < plan.train_minutes < plan.call_minutes == 10
    cmd = plan.member_command(plan.members[0])
    assert cmd[:4] == ["python3", "-m", "training.cli", "train"]
    assert cmd[cmd.index("--max-minutes") + 1] == f"{plan.train_minutes:g}"
    assert cmd[cmd.index("--fer2013") + 1] == ".carry/p.pack"
    # Member options come after the common ones, so the member's own --lr wins.
    sep = plan.members[-1].args
    assert sep.index("--lr") > sep.index("--optimizer")


def test_member_specs():
    m = parse_member("small: --model sepnet --width 0.5", common="--seed 3")
    assert (m.name, m.args) == ("small", ["--seed", "3", "--model", "sepnet", "--width", "0.5"])
    assert parse_member("--model vgg --seed 2").name == "vgg-s2"
    for bad, match in (("x: --seed 1", "needs --model"),
                       ("x: --model vgg --max-minutes 3", "set by the session"),
                       ("x: --model vgg --name y", "set by the session"),
                       ("x/y: --model vgg", "must be letters"),
                       ("x: --model 'vgg", "quotation")):
        with pytest.raises(FerError, match=match):
            parse_member(bad)
    with pytest.raises(FerError, match="two members are named a"):
        make_plan(["a: --model vgg", "a: --model sepnet"], pack="p")
    with pytest.raises(FerError, match="leaves no time"):
        make_plan(None, pack="p", call_minutes=3)


def test_plan_round_trip_and_a_foreign_file(tmp_path):
    plan = make_plan(["a: --model sepnet --epochs 2"], pack=".carry/p.pack", call_minutes=5,
                     require_gpu=False)
    back = GpuPlan.load(plan.save(tmp_path / "plan.json"))
    assert back == plan
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(FerError, match="not a GPU plan"):
        GpuPlan.load(tmp_path / "other.json")
    with pytest.raises(FerError, match="no such plan"):
        GpuPlan.load(tmp_path / "none.json")


def test_the_device_command_fits_the_device_tool():
    cmd = device_command(".carry/gpu-plan.json")
    assert len(cmd) < 2000  # the device tool's limit for one command
    assert "--no-index --no-deps" in cmd and "--upgrade" in cmd  # offline, over old copies
    assert cmd.endswith('gpu session .carry/gpu-plan.json --out "$OUT"')


def _git_status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout


def test_park_leaves_tracked_files_out_of_the_call_and_unpark_puts_them_back(tmp_path):
    from training.gpu.carry import park, parked, unpark

    repo = _git_repo(tmp_path / "repo")
    (repo / "ckpt").mkdir()
    (repo / "ckpt" / "w.keras").write_bytes(b"w" * 4000)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
                   cwd=repo, check=True)
    before = measure_carry(repo, [".carry"])
    assert park(repo, ["ckpt"]) == ["ckpt"] and parked(repo) == ["ckpt"]
    after = measure_carry(repo, [".carry"])
    assert before.tree_bytes - after.tree_bytes == 4000
    assert (repo / "ckpt" / "w.keras").read_bytes() == b"w" * 4000  # still on disk
    assert park(repo, ["ckpt"]) == ["ckpt"]  # twice is once
    with pytest.raises(FerError, match="no such path"):
        park(repo, ["nothing-here"])
    assert unpark(repo) == ["ckpt"] and parked(repo) == []
    assert measure_carry(repo, [".carry"]).tree_bytes == before.tree_bytes
    assert _git_status(repo) == ""  # the index and the exclude file as they were
    assert "ckpt" not in (repo / ".git" / "info" / "exclude").read_text()
    assert unpark(repo) == []


def test_the_call_budget():
    from training.gpu.plan import check_budget

    with pytest.raises(FerError, match="at most 10 minutes"):
        make_plan(None, pack="p", call_minutes=12)
    plan = make_plan(None, pack="p")
    short = check_budget(dataclasses.replace(plan, call_minutes=7))  # less device time left
    assert short.schedule_minutes == pytest.approx(plan.schedule_minutes - 3)
    with pytest.raises(FerError, match="leaves no time"):
        check_budget(dataclasses.replace(plan, call_minutes=3.5))
