"""Core: what every stage shares. The user-facing error (`FerError`), strict JSON and
tables (`report`), metrics on plain arrays, figures (`plots`), the split keys and their aliases
(`splits`) and the run folder with its saved predictions and targets (`runs`). It is the floor
of the house: it imports `contract`, numpy and the standard library (matplotlib lazily), and
nothing from another stage."""
