"""Keep the service's memory near flat under load: at most two glibc malloc arenas (`limit_arenas`).

glibc gives every thread that meets a locked arena a new one, up to 8 per core. Under 16 concurrent
clients the service's request threads (decoding, windows, encoder states: 0.1-1 MiB buffers each)
spread over those arenas, and memory freed in one arena cannot serve another. Capping the arenas
at 2 (what `MALLOC_ARENA_MAX=2` does, set here with `mallopt` so it holds however the service is
started) lowered the default Whisper model's RSS growth under 16 clients from 51.6 to 7.6 and from
36.3 to 23.7 KB per request in two A/B runs, at the same throughput (docs/benchmark.md "Memory under
load"). A fixed mmap threshold (`M_MMAP_THRESHOLD`) also cut it, to ~10 KB, but cost 29 % of the
throughput: every large buffer became fresh, zeroed pages.

Freed buffers still stay in glibc's heap, which only shrinks at its top: `start_trimming` calls
`malloc_trim(0)` every 5 s, handing free pages of every arena back, and keeps the RSS of a 180 s
load run in a band (slope +0.6 KB/request; docs/benchmark.md). `heap_info` (mallinfo2) and
`rss_bytes` feed the memory trace (`ser.serving.memtrace`).

`EmotionService.__init__` calls `limit_arenas` first; `SER_MALLOC_ARENAS=0` leaves glibc's default (the
benchmark's baseline). Elsewhere than glibc it does nothing.

    limit_arenas()   # True when set
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from functools import lru_cache

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
ARENAS = 2


def limit_arenas(arenas: int | None = None) -> bool:
    """Cap glibc's malloc arenas (default 2, or $SER_MALLOC_ARENAS; 0 = leave glibc's); False when not set."""
    arenas = int(os.environ.get("SER_MALLOC_ARENAS", ARENAS)) if arenas is None else arenas
    if arenas <= 0:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl, macOS): nothing to cap
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


@lru_cache(maxsize=1)
def _libc():
    """The C library, loaded once (`find_library` runs ldconfig: not something to repeat every trim)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def heap_info() -> dict[str, int]:
    """glibc's own account of its heap (`mallinfo2`), in bytes: `in_use`, `free` (held, not returned), `mmapped`.

    Empty where glibc (2.33+) is not there.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd, "heap": info.arena}


def trim() -> bool:
    """Give the pages glibc holds free (in every arena, not only at the heap's top) back to the system."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0))


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


TRIM_EVERY_S = 5.0  # the service's default (SER_MALLOC_TRIM_S): every second cost throughput, see below


def start_trimming(every_s: float | None = None) -> threading.Thread | None:
    """Call `trim` every `every_s` seconds (default $SER_MALLOC_TRIM_S or `TRIM_EVERY_S`; 0 = never) in a daemon
    thread: what freed buffers leave in glibc's heap goes back to the system instead of growing the RSS."""
    every_s = float(os.environ.get("SER_MALLOC_TRIM_S", TRIM_EVERY_S)) if every_s is None else every_s
    if every_s <= 0:
        return None

    def loop() -> None:
        while True:
            time.sleep(every_s)
            trim()

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
