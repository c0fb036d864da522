"""Export: Keras runs to the TF.js ensemble the page runs. Conversion, graph surgery and
running a model.json in Python (`tfjs`); the orchestration from members to a measured
manifest and an atomic swap of `models/` (`export`). It imports the stages below it, up to
`ensemble` (the weights it writes into the manifest), never a later stage."""
