"""Give the memory of an unloaded version back to the system.

A version's TensorFlow graph and session are freed when it unloads, but not returned: the graph's
Python objects sit in reference cycles until the cyclic collector happens to run, and glibc keeps
freed heap memory in its arenas. With the allocator settings that make large requests cheap
(:mod:`tfship.serving.grpc.allocator`: a 64 MB top pad, the mmap threshold raised to 32 MB) the
buffers of a model load come from the heap too, and each swap left about 0.6 MiB behind (200
swaps of an MLP under traffic, ``bench/swap_memory.py``). One collection and one
``malloc_trim(0)`` after each unload return it (``malloc_trim`` also releases free pages inside
the heap, not only its top) while the request path keeps its settings; it runs on the manager's
thread, off the request path, once per unload.

A full collection has to visit every tracked object, and importing TensorFlow leaves about 400,000
of them: 2.5-2.8 s of held GIL measured here, a stall of every request. So the server freezes what
exists once TensorFlow is imported (:func:`freeze_startup_objects`, ``gc.freeze()``: those objects
move to a permanent generation no collection visits), and the collection after an unload, like
Python's own automatic full collections, only walks what was created since: 0.3 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

__all__ = ["freeze_startup_objects", "release_unloaded_memory"]

log = logging.getLogger("tfship.serving")
_trim = None
_looked_up = False


def _malloc_trim() -> bool:
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        name = ctypes.util.find_library("c")
        try:
            _trim = ctypes.CDLL(name).malloc_trim if name else None
        except (OSError, AttributeError):
            _trim = None
        if _trim is not None:
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
    return bool(_trim(0)) if _trim is not None else False


def freeze_startup_objects() -> None:
    """Import TensorFlow (serving needs it anyway), collect once, and freeze every object alive
    so far out of the collector's reach. Call once, before the first model loads (a version
    loaded before the freeze would stay frozen, so its memory would outlive its unload)."""
    import tensorflow  # noqa: F401 - its import-time objects are what the freeze is for

    gc.collect()
    gc.freeze()


def release_unloaded_memory() -> None:
    """Collect the unloaded version's cycles, then trim every malloc arena (glibc only)."""
    gc.collect()
    try:
        _malloc_trim()
    except Exception:  # noqa: BLE001 - giving memory back is a courtesy, never a failure
        log.debug("malloc_trim failed", exc_info=True)
