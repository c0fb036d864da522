"""Explain (`fer-hybrid explain`): interpretability and error analysis of one target on one
split. It imports the stages below it (`core` up to `robustness`; the target is loaded by
`training.evaluate.scorer`, Grad-CAM on a TF.js member runs through `training.export.tfjs`),
never `bundle`, `gpu` or `campaign`.

| module | owns |
| --- | --- |
| `training/evaluate/scorer.py` | what is explained (run, .keras, exported models/) and loading it |
| `analysis.py` | confused pairs, the paper's named pairs, surest mistakes (numpy only) |
| `saliency.py` | occlusion sensitivity (any model, any backend) and Grad-CAM (Keras, TF/JAX) |
| `figures.py` | overlays, gallery tiles, the class-average figure |
| `report.py` | the self-contained explain.html |
| `build.py` | `explain_target`: the whole run, explain.json |

The report shows dataset faces, so it is written where git does not look (a run folder's
`explain/`, or `reports/`); explain.json holds numbers and split indices only.
"""
