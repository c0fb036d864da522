"""Robustness: accuracy under graded, seeded corruptions of 48x48 crops (`perturb`), with
and without the page's low-light normalisation ported from `web/js/lowlight.js`
(`lowlight`), scored as the page scores and reported (`robustness`). It imports `core`, `data`,
`models` and `evaluate` (the scorer and the temperature), never `explain` or later."""
