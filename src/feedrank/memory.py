"""Give the pages of freed memory back to the operating system after a phase that read in shards.

Index builds read a log a Parquet shard at a time: a few MB per column and shard, freed once the
shard is indexed. glibc's malloc serves such sizes from its heap once a larger array has been
freed (its mmap threshold rises with the largest freed block, up to 32 MB), and a freed heap block
stays resident while anything allocated after it lives. On the large simulated world at 100M
impressions the item view index's build left ~330 MB of freed heap resident beside its ~150 MB
of arrays (BENCHMARKS.md). `malloc_trim(0)` returns the free pages anywhere in the heap; where
the C library has no such call (not glibc), nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; whether the call exists here."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
