"""The plan of one GPU session: which members train, with which options, in how many minutes.

`fer-hybrid gpu prepare` writes it (`.carry/gpu-plan.json`, carried to the GPU machine);
`fer-hybrid gpu session` there reads it and trains every member at once in one device call.

A device call lasts at most 10 minutes and the machine is lost 30 s after it, so the plan
splits one call's minutes into: installing the wheels, the members' training (all at the
same time: one process each, sharing the GPU), and bundling the results into `$OUT`. Each
member's lr schedule is stretched over its training minutes (`--schedule-minutes`), so a
member ends with a finished schedule however fast the GPU turns out to be.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contract.files import atomic_write
from training.core.errors import FerError

FORMAT = "fer-hybrid/gpu-plan@1"
CALL_MINUTES = 10.0  # one device command's limit
INSTALL_MINUTES = 0.5  # pip install of three wheels, the GPU check
STARTUP_MINUTES = 1.5  # per member, inside its budget: read the pack, build, compile
BUNDLE_MINUTES = 1.0  # float16 check on PublicTest, parts, copy to $OUT
MARGIN_MINUTES = 0.5

# The options every member of the first session shares: the recipe that converged fastest
# on the CPU (AdamW + cosine + label smoothing, in-graph augmentation, CK+ and JAFFE added to
# the training images), bf16 on the GPU's tensor cores, a training checkpoint written only
# when the member stops (the call never brings checkpoints back), and no early stopping:
# the schedule is stretched over the member's minutes (--epochs is only a ceiling).
# --robust-aug low_light,occlusion: the robustness levers measured best (models/README.md,
# "Robustness training"): +4.3 points mean over ten corruptions, clean PrivateTest unchanged.
COMMON = ("--optimizer adamw --schedule cosine --label-smoothing 0.1 --aux ckplus,jaffe "
          "--robust-aug low_light,occlusion "
          "--precision bf16 --checkpoint-minutes 60 --epochs 500 --patience 500")

# The first session's members: every 48x48 architecture of the zoo, two seeds of the
# strongest. The transfer models (resnet50, senet50, vgg16) are left out: they take
# 197x197 RGB, start from random weights here (no ImageNet weights can be downloaded) and
# need far more than one call's minutes to get anywhere.
FIRST_SESSION = (
    "vgg-s0: --model vgg --seed 0 --lr 0.001",
    "vgg-s1: --model vgg --seed 1 --lr 0.001",
    "resnet_se-s0: --model resnet_se --seed 0 --lr 0.001",
    "five_layer-s0: --model five_layer --seed 0 --lr 0.001",
    "cnn_lstm-s0: --model cnn_lstm --seed 0 --lr 0.001",
    "sepnet-s0: --model sepnet --seed 0 --lr 0.002",
    "baseline_cnn-s0: --model baseline_cnn --seed 0 --lr 0.002",
)

# Options the session sets itself; a member must not set them.
SESSION_OWNED = ("--name", "--runs-dir", "--fer2013", "--data-dir", "--max-minutes",
                 "--schedule-minutes", "--resume")


@dataclass
class PlannedMember:
    name: str
    args: list[str]  # `fer-hybrid train` options, without the SESSION_OWNED ones

    @property
    def model(self) -> str:
        return self.args[self.args.index("--model") + 1]


@dataclass
class GpuPlan:
    members: list[PlannedMember]
    pack: str  # the data pack, relative to the repository root
    call_minutes: float = CALL_MINUTES
    # On the GPU machine, under $TMPDIR (default /tmp): lost with it, hence the bundle.
    runs_dir: str = "fer-runs"
    bundle_dir: str = "fer-bundle"
    require_gpu: bool = True  # refuse to train on the device's CPU if JAX sees no GPU
    format: str = FORMAT
    notes: dict = field(default_factory=dict)

    @property
    def train_minutes(self) -> float:
        """Each member's wall-clock budget (start-up included): the call less install and
        bundle time."""
        return round(self.call_minutes - INSTALL_MINUTES - BUNDLE_MINUTES - MARGIN_MINUTES, 2)

    @property
    def schedule_minutes(self) -> float:
        """Minutes of actual training the lr schedule is stretched over."""
        return round(self.train_minutes - STARTUP_MINUTES, 2)

    @property
    def runs_path(self) -> Path:
        return Path(tempfile.gettempdir()) / self.runs_dir

    @property
    def bundle_path(self) -> Path:
        return Path(tempfile.gettempdir()) / self.bundle_dir

    def member_command(self, member: PlannedMember, python: str = "python3") -> list[str]:
        return [python, "-m", "training.cli", "train", *member.args, "--name", member.name,
                "--runs-dir", str(self.runs_path), "--fer2013", self.pack,
                "--max-minutes", f"{self.train_minutes:g}",
                "--schedule-minutes", f"{self.schedule_minutes:g}", "--verbose", "2"]

    def to_json(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> GpuPlan:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FerError(f"{path}: no such plan; write one with `fer-hybrid gpu prepare`") \
                from None
        except (OSError, ValueError) as err:
            raise FerError(f"{path}: not a readable GPU plan ({err})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise FerError(f"{path}: not a GPU plan of this version (format "
                           f"{d.get('format') if isinstance(d, dict) else None!r}, expected "
                           f"{FORMAT!r}); write it again with `fer-hybrid gpu prepare`")
        members = [PlannedMember(**m) for m in d.pop("members")]
        return cls(members=members, **d)


def parse_member(spec: str, common: str = "",
                 owned: tuple[str, ...] = SESSION_OWNED, owner: str = "the session",
                 label: str = "--member") -> PlannedMember:
    """`"NAME: TRAIN OPTIONS"` (or just options with --model) -> PlannedMember.

    The member's own options follow the common ones, so they win where both set a flag
    (typer keeps the last value). `owned`: options the caller (`owner`) sets itself, refused
    here; `label` starts each error message."""
    name, sep, rest = spec.partition(":")
    if not sep or " " in name.strip() or name.strip().startswith("-"):
        name, rest = "", spec
    try:
        args = shlex.split(common) + shlex.split(rest)
    except ValueError as err:
        raise FerError(f"{label} {spec!r}: {err}") from None
    if "--model" not in args or args.index("--model") + 1 >= len(args):
        raise FerError(f"{label} {spec!r}: needs --model NAME (e.g. 'vgg-s0: --model vgg "
                       f"--seed 0')")
    taken = [a for a in args if a.split("=")[0] in owned]
    if taken:
        raise FerError(f"{label} {spec!r}: {', '.join(taken)} is set by {owner} itself")
    name = name.strip() or _default_name(args)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise FerError(f"{label} {spec!r}: the name {name!r} must be letters, digits, '.', "
                       f"'_' and '-' (it names a run folder and the files that come back)")
    return PlannedMember(name=name, args=args)


def _default_name(args: list[str]) -> str:
    model = args[args.index("--model") + 1]
    seed = args[args.index("--seed") + 1] if "--seed" in args[:-1] else "0"
    return f"{model}-s{seed}"


def make_plan(specs: list[str] | None, *, pack: str, common: str = COMMON,
              call_minutes: float = CALL_MINUTES, require_gpu: bool = True) -> GpuPlan:
    """A checked plan: the first session's members unless `specs` name others."""
    members = [parse_member(s, common) for s in (specs or FIRST_SESSION)]
    names = [m.name for m in members]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FerError(f"two members are named {', '.join(dupes)}; give each its own name "
                       f"('NAME: --model …')")
    return check_budget(GpuPlan(members=members, pack=pack, call_minutes=call_minutes,
                                require_gpu=require_gpu))


def check_budget(plan: GpuPlan) -> GpuPlan:
    """FerError unless the call's minutes leave time to train, and it fits one command."""
    if plan.call_minutes > CALL_MINUTES:
        raise FerError(f"--call-minutes {plan.call_minutes:g}: a device command runs at most "
                       f"{CALL_MINUTES:g} minutes")
    if plan.schedule_minutes <= 0.2:
        raise FerError(f"--call-minutes {plan.call_minutes:g} leaves no time to train after "
                       f"installing, starting up and bundling (needs more than "
                       f"{plan.call_minutes - plan.schedule_minutes + 0.2:g})")
    return plan
