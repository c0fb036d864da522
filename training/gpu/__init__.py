"""GPU: one lent GPU call planned, carried and run. The plan: members and the call's
minutes (`plan`), what a call carries (`carry`: 64 MiB, the pinned wheels, `--park`) and the
on-device runner (`session`: members at once, then the bundle, run as `fer-hybrid` children).
It imports `core` only; the bundle it makes is `training.bundle`'s, reached through the
command line, not imported."""
