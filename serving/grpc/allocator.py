"""Keep glibc from handing request-sized memory back to the kernel after every call.

A large batch request is a multi-megabyte message, and serving it allocates several buffers of
that size (gRPC's receive slices, the Python bytes, the parsed proto, the numpy input, TF's
tensors). With glibc's defaults the freed top of the heap is trimmed right away, so the next
request page-faults the same memory back in. The pad is sized for many such requests in flight
(a smaller pad was still trimmed away under concurrent load); the cost is up to
:data:`TOP_PAD_BYTES` of freed memory kept per malloc arena. Process-wide, so it is applied
once; a ``MALLOC_TOP_PAD_`` set in the environment wins.

Setting any of these options freezes glibc's mmap threshold at its 128 KB start (it normally
grows to the size of freed mmapped chunks), so every request-sized buffer would be a fresh
``mmap`` that page-faults in and is unmapped on free: the threshold is raised to glibc's own
maximum on 64-bit too. The measured gains are in README ("Server benchmark", where the time goes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["keep_freed_heap", "TOP_PAD_BYTES", "MMAP_THRESHOLD_BYTES"]

log = logging.getLogger("tfship.serving")

TOP_PAD_BYTES = 64 * 1024 * 1024
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # malloc.h
_applied = False


def keep_freed_heap(top_pad: int = TOP_PAD_BYTES) -> bool:
    """Set glibc's ``M_TOP_PAD`` (once per process); False where there is no glibc ``mallopt``."""
    global _applied
    if _applied or "MALLOC_TOP_PAD_" in os.environ:
        return _applied
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_TOP_PAD, top_pad))
    if _applied and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if not _applied:
        log.debug("mallopt(M_TOP_PAD, %d) failed; freed memory is trimmed as usual", top_pad)
    return _applied
