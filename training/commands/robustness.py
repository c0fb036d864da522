"""`fer-hybrid robustness`: accuracy under low light, blur, JPEG, roll, small faces, occlusions.

Only typer/pathlib/typing at module level: the classifier imports TensorFlow in the body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import DataDir, Fer2013, PredictBatch, Sample, ScoredTarget


def robustness(
    target: ScoredTarget,
    split: Annotated[str, typer.Option(
        "--split", help="test (PrivateTest) or val (PublicTest).")] = "test",
    conditions: Annotated[str | None, typer.Option(
        "--conditions",
        help="Comma-separated conditions or families (default: all). Conditions: low_light, "
             "night, over_exposure, motion_blur, defocus_blur, jpeg, roll, scale, "
             "occlusion_eyes, occlusion_lower, occlusion_hand, low_light_roll, night_mask, "
             "low_light_scale. Families: lighting, blur, compression, pose, resolution, "
             "occlusion, combined. The clean crop is always measured.")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the random parts (noise, blur direction, roll sign, patch "
                       "place) and of --sample.")] = 0,
    sample: Sample = None,
    tta: Annotated[bool | None, typer.Option(
        "--tta/--no-tta", help="Flip TTA (default: as the manifest says; on for Keras "
                               "targets).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: <models>/robustness, <run>/robustness, or "
                      "<model>_robustness beside a .keras file).")] = None,
    model_card: Annotated[Path | None, typer.Option(
        "--model-card", help="Also write the goals and the table into this Markdown file "
                             "(e.g. models/README.md), between <!-- robustness:begin --> and "
                             "<!-- robustness:end --> (appended when they are missing).")] = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    batch_size: PredictBatch = 256,
) -> None:
    """Robustness benchmark: accuracy per corruption and severity, with and
    without the page's low-light normalisation, against the robustness goals
    (the largest drop allowed under moderate low light, night, a 20° roll, eyes or
    lower face occluded, 24-px faces).

    Each condition of training/robustness/perturb.py corrupts the split's 48x48
    crops at severities mild/moderate/severe (seeded: reruns give the same
    numbers).
    Every corrupted crop is scored as it is (raw) and after the normalisation
    of web/js/lowlight.js (page); drops are points below the clean crops.
    Writes robustness.json, robustness.md and robustness.png (curves per
    condition family). A full PrivateTest run of the shipped model took 29
    minutes on a busy 2-core CPU; try --sample 500 first.
    """
    from training.data.dataset import make
    from training.data.evaluation import load_eval_split
    from training.data.splits import stratified_sample
    from training.evaluate.scorer import resolve_source
    from training.robustness.robustness import (
        command_line,
        measure,
        page_classifier,
        plan_robustness,
        summary,
        write_reports,
    )

    source = resolve_source(target)
    command = command_line(target, split=split if split != "test" else None,
                           conditions=conditions, seed=seed or None, sample=sample,
                           tta=tta is True, no_tta=tta is False, data_dir=data_dir,
                           fer2013=fer2013, out=out, model_card=model_card)
    plan = plan_robustness(source, tta=tta, conditions=conditions, split=split, out_dir=out, seed=seed,
                           sample=sample, model_card=model_card, command=command)
    # the models run in TensorFlow and the report ends in a matplotlib figure: without the
    # training stack, the install hint comes now, not after the data (or half an hour of work)
    import keras  # noqa: F401
    import matplotlib  # noqa: F401
    import tqdm  # noqa: F401

    data = load_eval_split(plan.split, data_dir=data_dir, fer2013=fer2013)
    x, y = data.x, data.y
    if sample is not None:
        picked = stratified_sample(make(x, y, "fer2013"), sample, seed)
        x, y = picked.x, picked.y
    classify = page_classifier(source, tta=plan.tta, batch_size=batch_size)
    result = measure(plan, classify, x, y)
    files = write_reports(result, plan)
    typer.echo(summary(result))
    typer.echo("  wrote " + ", ".join(str(p) for p in files.values()))
