"""`fer-hybrid explain`: error analysis and saliency maps of one target, as one HTML report.

Only typer/pathlib/typing at module level: TensorFlow/Keras load in the command body, after
every cheap check (target path, manifest, method, options) has passed.
"""

from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import DataDir, Fer2013, PredictBatch, ScoredTarget


def explain(
    target: ScoredTarget,
    split: Annotated[str, typer.Option(
        "--split", help="test (PrivateTest), val (PublicTest) or train.")] = "test",
    sample: Annotated[int | None, typer.Option(
        "--sample", help="Explain a stratified sample of at most N images of the split (quick "
                         "runs); indices in the report still refer to the full split.")] = None,
    gallery: Annotated[int, typer.Option(
        "--gallery", help="Images per gallery: the surest mistakes, and each confused pair.")] = 12,
    pairs: Annotated[int, typer.Option(
        "--pairs", help="How many of the most confused pairs get a gallery.")] = 3,
    method: Annotated[str | None, typer.Option(
        "--method", help="Saliency: occlusion (any model), gradcam (Keras targets) or both. "
                         "Default: both for Keras targets, occlusion for a models folder.",
        show_default=False)] = None,
    maps_per_class: Annotated[int, typer.Option(
        "--maps-per-class", help="Images per true class averaged into the class maps (the "
                                 "slow part: occlusion runs 121 patched copies of each).")] = 50,
    gradcam_layer: Annotated[str | None, typer.Option(
        "--gradcam-layer", help="Layer whose feature map Grad-CAM weighs (default: the last "
                                "convolutional one; sepnet's is 2x2, an earlier one gives finer "
                                "maps).", show_default=False)] = None,
    tta: Annotated[bool | None, typer.Option(
        "--tta/--no-tta", help="Score and explain with flip TTA. Default: as the target is "
                               "scored (the manifest's choice; on for Keras targets).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: <run>/explain, or reports/explain-<name> for a "
                      ".keras file or a models folder). It will hold dataset faces: keep it out "
                      "of git.", show_default=False)] = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    batch_size: PredictBatch = 256,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the --sample draw and of the images averaged per class.")] = 0,
) -> None:
    """Explain what a model gets wrong and where it looks: explain.html + explain.json.

    Confusion matrix (with flip TTA when the target has it), the most
    confused pairs, the paper's hard pairs (sad/neutral, fear/surprise,
    disgust/angry) both ways, per-class accuracy, the surest mistakes and
    examples of each top pair with saliency overlays, and class-average maps
    over the class-average face. Saliency: occlusion sensitivity (works for
    every model, the shipped TF.js ones included) and Grad-CAM for Keras
    models.
    """
    import time

    from training.core.report import pct
    from training.core.splits import normalise_split
    from training.data import splits
    from training.evaluate.scorer import resolve_source
    from training.explain.build import (
        ExplainOptions,
        default_out_dir,
        explain_target,
        saliency_methods,
    )

    opts = ExplainOptions(split=normalise_split(split), sample=sample, gallery=gallery,
                          pairs=pairs, method=method, maps_per_class=maps_per_class,
                          gradcam_layer=gradcam_layer, tta=tta,
                          batch_size=batch_size, seed=seed)
    opts.check()
    source = resolve_source(target)
    methods = saliency_methods(source, method)
    out_dir = out if out is not None else default_out_dir(source)
    # every target needs the training stack (models run in TensorFlow): without it, the install
    # hint comes now rather than after the dataset has loaded
    import keras  # noqa: F401
    loader = splits.split_loader(data_dir=data_dir, fer2013=fer2013)
    started = time.monotonic()
    result = explain_target(source, loader, opts, out_dir, methods=methods, progress=True)
    mode = "flip TTA" if result["tta"] else "no TTA"
    typer.echo(f"{result['target']} on {result['split']} ({result['split_name']}), "
               f"{result['n']} images, {mode}: accuracy {pct(result['accuracy'])}, macro-F1 "
               f"{pct(result['macro_f1'])}")
    for p in result["named_pairs"]:
        ab, ba = p["a_to_b"], p["b_to_a"]
        typer.echo(f"  {ab['true']} -> {ab['pred']} {pct(ab['rate'], 1)} ({ab['count']}), "
                   f"{ba['true']} -> {ba['pred']} {pct(ba['rate'], 1)} ({ba['count']})")
    top = ", ".join(f"{p['true']} -> {p['pred']} {p['count']} ({pct(p['rate'], 1)})"
                    for p in result["top_pairs"][:3])
    typer.echo(f"  most confused: {top or 'none'}")
    typer.echo(f"  wrote {result['files']['html']} and explain.json in "
               f"{time.monotonic() - started:.0f} s (the report shows dataset faces: keep it "
               "out of git)")
