"""`ser.serving.malloc`: the service caps glibc's malloc arenas, and the switch turns it off."""

from __future__ import annotations

import platform

import pytest

from ser.serving.malloc import limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt arenas are glibc's")
def test_arenas_are_capped_on_glibc_and_left_alone_when_switched_off(monkeypatch):
    assert limit_arenas(2) is True
    monkeypatch.setenv("SER_MALLOC_ARENAS", "0")
    assert limit_arenas() is False
    monkeypatch.setenv("SER_MALLOC_ARENAS", "2")
    assert limit_arenas() is True


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallinfo2 / malloc_trim are glibc's")
def test_trim_gives_freed_heap_pages_back():
    """Many small blocks freed below a live one stay in glibc's heap (the top cannot shrink); trim returns them."""
    from ser.serving.malloc import heap_info, rss_bytes, trim

    trim()
    blocks = [bytearray(4000) for _ in range(20000)]  # ~80 MB of heap blocks, below the mmap threshold
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    keep = bytearray(4000)  # a live block above them pins the heap's top
    before_free = rss_bytes()
    del blocks
    held = heap_info()["free"]
    assert held > 50e6  # freed, but still glibc's
    trimmed = trim()
    after = rss_bytes()
    assert trimmed and after < before_free - 40e6, (before_free, after)
    assert len(keep) == 4000


def test_trimming_thread_follows_the_switch(monkeypatch):
    from ser.serving.malloc import TRIM_EVERY_S, start_trimming

    monkeypatch.setenv("SER_MALLOC_TRIM_S", "0")
    assert start_trimming() is None
    monkeypatch.delenv("SER_MALLOC_TRIM_S")
    thread = start_trimming()
    assert TRIM_EVERY_S > 0 and thread is not None and thread.daemon and thread.is_alive()


def test_memory_trace_writes_samples_and_snapshots_on_request(tmp_path, monkeypatch):
    import json
    import time
    import tracemalloc

    from ser.serving.memtrace import start_from_env, stop

    assert start_from_env() is None  # unset: nothing runs
    monkeypatch.setenv("SER_MEMORY_TRACE_DIR", str(tmp_path))
    monkeypatch.setenv("SER_MEMORY_TRACE_S", "0.05")
    assert start_from_env() is not None
    (tmp_path / "mark-start").touch()
    until = time.time() + 20
    while not (tmp_path / "heap-start.tracemalloc").exists() and time.time() < until:
        time.sleep(0.05)
    kept = [bytes(1000) for _ in range(100)]  # noqa: F841 - allocated while tracing, still alive
    (tmp_path / "mark-gc-end").touch()
    while not (tmp_path / "heap-gc-end.tracemalloc").exists() and time.time() < until:
        time.sleep(0.05)
    stop()
    tracemalloc.stop()
    start = tracemalloc.Snapshot.load(str(tmp_path / "heap-start.tracemalloc"))
    end = tracemalloc.Snapshot.load(str(tmp_path / "heap-gc-end.tracemalloc"))
    grown = sum(s.size_diff for s in end.compare_to(start, "lineno") if "test_malloc.py" in str(s.traceback))
    assert grown >= 100_000
    lines = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert all(line["rss"] > 0 for line in lines) and any("gc_collected" in line for line in lines)
    assert not list(tmp_path.glob("mark-*"))
