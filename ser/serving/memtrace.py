"""Where the service's memory goes under load: a trace the serving benchmark reads ($SER_MEMORY_TRACE_DIR).

With `SER_MEMORY_TRACE_DIR` set, `start_from_env` (called by `EmotionService.__init__`) starts a
daemon thread that, every `SER_MEMORY_TRACE_S` seconds (default 2), appends one JSON line to
`trace.jsonl`: the time, the RSS, glibc's account of its heap (`ser.serving.malloc.heap_info`: bytes
in use, held free, mmapped) and the Python heap tracemalloc sees. A file `mark-<name>` that a client
drops in the folder makes the thread dump a tracemalloc snapshot as `heap-<name>.tracemalloc` (then
delete the mark; a name starting `gc-` runs a full garbage collection first); `mark-start` first
starts tracemalloc, after the client's warm-up, so the last snapshot holds exactly the Python objects
allocated since and still alive. `bench/memory_trace.py`
uses it to split the RSS growth into Python objects, glibc's free lists and the rest (native
libraries). tracemalloc slows every allocation: traced runs measure memory, not speed. Unset,
nothing runs.

    SER_MEMORY_TRACE_DIR=/tmp/trace bentoml serve ser.serving.service:EmotionService
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

from ser.serving.malloc import heap_info, rss_bytes

FRAMES = 8  # traceback depth kept per allocation: enough to see the caller above numpy


def sample() -> dict:
    """One line of the trace: time, RSS, glibc heap, Python heap (bytes)."""
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
    return {"t": round(time.time(), 3), "rss": rss_bytes(), **heap_info(), "python": traced}


def _loop(folder: Path, every_s: float) -> None:
    with (folder / "trace.jsonl").open("a") as out:
        while not _stop.is_set():
            out.write(json.dumps(sample()) + "\n")
            out.flush()
            for mark in sorted(folder.glob("mark-*")):
                name = mark.name[len("mark-") :]
                if name == "start" and not tracemalloc.is_tracing():
                    tracemalloc.start(FRAMES)
                if name.startswith("gc-"):  # collect reference cycles first: is what grew garbage or kept?
                    out.write(json.dumps({**sample(), "gc_collected": gc.collect()}) + "\n")
                    out.flush()
                tmp = folder / f".heap-{name}.tmp"
                tracemalloc.take_snapshot().dump(str(tmp))
                os.replace(tmp, folder / f"heap-{name}.tracemalloc")  # whole or absent, never half-written
                mark.unlink()
            _stop.wait(every_s)


_stop = threading.Event()


def stop() -> None:
    """End the trace thread (after its current sample)."""
    _stop.set()


def start_from_env() -> threading.Thread | None:
    """Start tracing when $SER_MEMORY_TRACE_DIR is set (see the module docstring); None otherwise."""
    folder = os.environ.get("SER_MEMORY_TRACE_DIR")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    _stop.clear()
    every_s = float(os.environ.get("SER_MEMORY_TRACE_S", 2.0))
    thread = threading.Thread(target=_loop, args=(Path(folder), every_s), name="memory-trace", daemon=True)
    thread.start()
    return thread
