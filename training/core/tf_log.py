"""TensorFlow's C++ start-up log, kept out of the command line's stderr.

Importing TensorFlow prints about eight lines of C++ log (CUDA plugin registration, "computation
placer already registered", `failed call to cuInit` on a machine without a GPU) that say
nothing to a user and bury the one `error:` line or the progress bars. TF_CPP_MIN_LOG_LEVEL
hides only TensorFlow's own part of them: XLA writes the rest through absl before absl's
logging is set up ("All log messages before absl::InitializeLog() is called are written to
STDERR"), which no setting reaches. So the import itself runs with file descriptor 2 sent to a
scratch file, and what it wrote comes back afterwards without the C++ log lines: a Python
warning or a traceback printed during the import still reaches the user. After the import,
TF_CPP_MIN_LOG_LEVEL=3 keeps the first device query's `failed call to cuInit` (no GPU here,
which the user knows) off too; TensorFlow errors that matter reach Python as exceptions.

A developer who sets TF_CPP_MIN_LOG_LEVEL (e.g. 0, to see device placement) gets every line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager

# absl ("E0000 00:00:1796580250.272425   20762 cuda_dnn.cc:8579] ..."), TensorFlow's own
# ("2026-12-06 18:04:11.037474: E external/.../cuda_fft.cc:467] ...") and absl's notice.
CPP_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")


def without_cpp_log(text: str) -> str:
    """`text` without the lines of TensorFlow's and XLA's C++ log."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not CPP_LOG_LINE.match(line))


@contextmanager
def cpp_log_filtered():
    """File descriptor 2 goes to a scratch file inside the block; what was written there comes
    back to stderr afterwards, without the C++ log lines (also when the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            sys.stderr.write(without_cpp_log(caught.read().decode("utf-8", "replace")))
            sys.stderr.flush()


class _FilteredLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run inside `cpp_log_filtered`; the module keeps the real one."""

    def __init__(self, real: importlib.abc.Loader):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.real  # resources, reloads: as usual
        with cpp_log_filtered():
            self.real.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """On the first `import tensorflow` (Keras' included), load it with stderr filtered."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and the look-up below must not come back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Call before anything imports TensorFlow; does nothing where the developer set
    TF_CPP_MIN_LOG_LEVEL or TensorFlow is already imported."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's own lines, up to `failed call to cuInit`
    sys.meta_path.insert(0, _QuietImport())
