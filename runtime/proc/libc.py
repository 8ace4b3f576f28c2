"""The few C library calls Python has no wrapper for: prctl and malloc_trim (via ctypes)."""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_LIBC = ctypes.CDLL(None, use_errno=True)  # None: the symbols already in this process


def libc_function(name: str) -> Callable[..., int] | None:
    """A C library function that returns an int, or None where the library lacks it."""
    try:
        function: Callable[..., int] = getattr(_LIBC, name)
    except AttributeError:  # no such symbol (malloc_trim on musl)
        return None
    return function


_prctl = libc_function("prctl")


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (what PID 1 gets for free), so they are reaped here."""
    if os.getpid() == 1:
        return True
    return _prctl is not None and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def release_startup_memory() -> None:
    """Collect start-up garbage (config parsing, imports) and give freed heap back to the OS."""
    gc.collect()
    trim = libc_function("malloc_trim")  # glibc; absent on musl
    if trim is not None:
        trim(0)
