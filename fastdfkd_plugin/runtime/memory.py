"""Keep freed CPU memory in the process, so that synthesis does not pay the kernel for every step's tensors.

glibc serves each allocation above its mmap threshold (at most 32 MiB, so every
activation of a batch at 96–224 px) with fresh pages from the kernel and hands them
back on free. Every synthesis step then has the kernel fault in and zero its activations
again. With mmap and trimming off, freed memory is reused instead (no page faults once
warm): 1.3–1.4× the images/s at 224 px (docs/benchmarks/resolution_memory.md). The
price is a resident set that stays near the run's peak (about 1 GiB more there). The
``fastdfkd`` command turns this on for its own process (``FASTDFKD_KEEP_FREED_MEMORY=0``
opts out); a library user opts in by calling :func:`keep_freed_memory`, because it
changes the whole process.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
OPT_OUT = "FASTDFKD_KEEP_FREED_MEMORY"


def glibc_malloc() -> bool:
    """Whether this process allocates through glibc (Linux with glibc, not musl, macOS or Windows)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (no mmap, no trimming); False where the C library is not glibc."""
    if not glibc_malloc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))  # -1: never trim (mallopt(3))


def keep_freed_memory_unless_opted_out() -> bool:
    """What the ``fastdfkd`` command does at start-up."""
    return os.environ.get(OPT_OUT, "1") != "0" and keep_freed_memory()


def release_freed_memory() -> bool:
    """Hand freed heap pages back to the kernel now (glibc's ``malloc_trim``), whatever :func:`keep_freed_memory` set.

    Memory plans call it before measuring: freed memory the process kept would be reused by a
    probe without raising its resident set, and the probe would read low (PP-OCRv4's detector,
    probed after its check against ONNX Runtime, read 0.17 GiB for a batch that took several).
    """
    if not glibc_malloc():
        return False
    trim = ctypes.CDLL(None).malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
