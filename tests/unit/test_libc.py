"""runtime.proc.libc.libc_function: C library calls through ctypes."""

from __future__ import annotations

import os

from runtime.proc.libc import libc_function


def test_calls_a_real_libc_function() -> None:
    """A found symbol is callable and returns the C int as a Python int."""
    getpid = libc_function("getpid")
    assert getpid is not None
    assert getpid() == os.getpid()


def test_a_missing_symbol_is_none() -> None:
    """Where the library lacks a function (malloc_trim on musl), the answer is None."""
    assert libc_function("runtime_no_such_function_anywhere") is None
