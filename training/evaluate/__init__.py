"""Evaluate: scoring what the earlier stages made. One target on one split with its
reports (`evaluate`), what `explain` and `robustness` score: a run, a .keras file or an exported
`models/` folder soft-voted as the page does (`scorer`), calibration and the temperature fit
(`calibration`), and the results table beside published and peer numbers (`results`). It may
import every stage below it (`core` up to `bench`), never `robustness`, `explain` or later."""
