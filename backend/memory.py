"""The server process's malloc settings, so that memory freed after a decode goes back to the OS.

The decode budget (backend/decode_budget.py) bounds what concurrent uploads hold at once, but
glibc's allocator kept what they had freed: each threadpool thread that decoded an image got its
own arena (up to 8 per core), and buffers of up to 32 MiB (the mmap threshold grows to the size
of the largest block freed) were carved from those arenas and kept there. 16 uploads of 12 MP
photos left the server at ~1.5 GiB resident, for good.

Two settings, made once when the app starts (`mallopt`, glibc only; an operator's own
MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX environment variable wins):

* a fixed mmap threshold of 1 MiB: every image-sized buffer (Pillow's 16 MiB blocks, libjpeg's
  coefficient arrays, numpy's pixel arrays) is its own mapping, unmapped when freed, whichever
  thread frees it; fixing it also stops glibc from raising it;
* at most 2 arenas: the smaller allocations of many threads share them instead of each thread
  keeping its own.

Measured (tests/test_upload_memory.py, 16 concurrent 4096x3072 progressive JPEG originals):
peak 1.48 GiB -> ~230 MiB, resident afterwards 1.47 GiB -> ~85 MiB (idle: 80 MiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger("fer_hybrid.memory")

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENA_MAX = 2

_SETTINGS = (
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
)


def tune_malloc() -> dict[str, int]:
    """Apply the settings above; returns what was set (empty when not on glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = {}
    for env, param, value in _SETTINGS:
        if env in os.environ:
            continue  # the operator chose
        if mallopt(param, value) == 1:
            applied[env] = value
        else:
            log.warning("mallopt(%s, %d) failed; decode memory may stay resident", env, value)
    return applied
