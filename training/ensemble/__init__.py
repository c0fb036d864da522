"""Ensemble: soft voting of several runs with weights (`voting`, all that export and the scorer
need), the members, the greedy member choice on PublicTest and the report (`ensemble`), and
the soft targets an ensemble makes for distilling a student (`teacher`). It imports `core`,
`data`, `models` and `fit` (the soft-targets file format), never a later stage."""
