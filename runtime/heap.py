"""Keep freed memory in the process instead of giving it back to the OS: no page faults in the control loop.

Every step returns fresh state arrays (the Policy adopts them; backend.py's contract), the size of the whole
recurrent state: 16.8 MB per mLSTM block at batch 16 for the 16M model. glibc serves allocations that large
with mmap and unmaps them on free, so each step's new arrays arrive as untouched pages that the kernel must
fault in and zero, one 4 KB page at a time. Measured on the 16M native-flavour graph at batch 16 (one thread):
3,600 page faults per step and 2.4 ms instead of 1.2 ms per compiled cell call. The real-time Linux advice
is to turn that off: no mmap for the heap (M_MMAP_MAX = 0) and no trimming (M_TRIM_THRESHOLD = -1), so freed
blocks are reused by the next step's allocations of the same size.

Process-wide, like any allocator setting; done once when a backend is opened. Off where the C library is not
glibc (musl, macOS, Windows) or when LRAM_KEEP_HEAP=0.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's malloc.h
_done = None


def retain_freed_memory() -> bool:
    """Apply the setting once; True when it is in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("LRAM_KEEP_HEAP", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _done
