"""aloe_cli.memory: glibc's thresholds are set once, and only where there is glibc."""

from __future__ import annotations

import ctypes
import sys

import pytest

from aloe_cli import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_sets_the_thresholds_once(monkeypatch):
    try:
        ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        pytest.skip("no glibc")
    calls = []
    monkeypatch.setattr(memory, "_done", False)
    real = ctypes.CDLL

    class Libc:
        def __init__(self, name):
            self.lib = real(name)

        def mallopt(self, param, value):
            calls.append((param, value))
            return self.lib.mallopt(param, value)

    monkeypatch.setattr(memory.ctypes, "CDLL", Libc)
    assert memory.keep_freed_memory() is True
    assert calls == [(memory.M_MMAP_THRESHOLD, 32 << 20), (memory.M_TRIM_THRESHOLD, 64 << 20)]
    assert memory.keep_freed_memory() is True and len(calls) == 2  # once per process


def test_keep_freed_memory_does_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
