"""Keep the service's memory near flat under load: at most two glibc malloc arenas (`limit_arenas`).

glibc gives every thread that meets a locked arena a new one, up to 8 per core. Under 16 concurrent
clients the service's request threads (decoding, windows, encoder states: 0.1-1 MiB buffers each)
spread over those arenas, and memory freed in one arena cannot serve another. Capping the arenas
at 2 (what `MALLOC_ARENA_MAX=2` does, set here with `mallopt` so it holds however the service is
started) lowered the default Whisper model's RSS growth under 16 clients from 51.6 to 7.6 and from
36.3 to 23.7 KB per request in two A/B runs, at the same throughput (docs/benchmark.md "Memory under
load"). A fixed mmap threshold (`M_MMAP_THRESHOLD`) also cut it, to ~10 KB, but cost 29 % of the
throughput: every large buffer became fresh, zeroed pages.

`EmotionService.__init__` calls it first; `SER_MALLOC_ARENAS=0` leaves glibc's default (the
benchmark's baseline). Elsewhere than glibc it does nothing.

    limit_arenas()   # True when set
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
ARENAS = 2


def limit_arenas(arenas: int | None = None) -> bool:
    """Cap glibc's malloc arenas (default 2, or $SER_MALLOC_ARENAS; 0 = leave glibc's); False when not set."""
    arenas = int(os.environ.get("SER_MALLOC_ARENAS", ARENAS)) if arenas is None else arenas
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
