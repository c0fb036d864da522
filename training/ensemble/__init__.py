"""Ensemble: soft voting of several runs, their weights and the greedy member choice on
PublicTest (`ensemble`), and the soft targets an ensemble makes for distilling a student
(`teacher`). It imports `core`, `data`, `models` and `fit` (the soft-targets file format),
never a later stage."""
