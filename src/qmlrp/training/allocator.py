"""Keep the compiled training step's buffers mapped between steps (glibc's malloc, Linux).

XLA's CPU runtime allocates the step's temporary buffer (~65 MB for a batch of 64 QM9 molecules)
with ``malloc`` and frees it at the end of every step. glibc serves a block that large with a
fresh ``mmap`` (or from a per-thread arena heap that it trims), so every step maps the memory again
and the kernel zero-fills it page by page: ~15,000 minor page faults and ~25 ms of system time per
step on the 2-core development machine, a third of the step's CPU time. Told to keep one arena, never
to ``mmap`` and never to trim below 1 GiB, malloc hands the same pages back step after step
(measured: 73 -> 53 CPU-ms per step, 15,000 -> 40 faults; ``benchmarks/bench_train_step.py``).

The settings are made with ``mallopt`` from inside the process, before JAX starts its threads, so no
``LD_PRELOAD`` or environment is needed. Elsewhere (macOS, musl) :func:`keep_freed_memory` does
nothing. ``QMLRP_MALLOC=system`` leaves malloc as it is (for comparisons).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
"""glibc's ``mallopt`` parameter numbers (malloc.h)."""
TRIM_THRESHOLD_BYTES = 1 << 30
_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory instead of returning it; True when it was set.

    Call once, early in a training process (before JAX is imported)."""
    if os.environ.get("QMLRP_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: mallopt is a stub or absent
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
