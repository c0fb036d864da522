"""User-facing errors.

Raise `FerError("what is wrong; how to fix it")` for anything a user can cause
(wrong path, corrupt file, missing dataset, bad option). The CLI prints it as a
single `error: …` line and exits with status 2 instead of showing a traceback.
"""


class FerError(Exception):
    """An error whose message is meant for the user, not a traceback."""
