"""Compile and cache librosa's numba kernels once, in one process, right after install.

Why: librosa's `guvectorize(cache=True)` kernels write two cache files each; when several processes
import librosa for the first time at once (parallel benchmark folds, a process-pool flow), they can
write halves that do not match, and every later call of such a kernel (e.g. `localmin`, used by
`librosa.yin` in the EDA stage) dies with a segmentation fault (numba issue #10128). Importing every
librosa module here compiles the eagerly typed kernels from a single process first.

Run: `python -m scripts.warm_numba_cache` (the Makefile's set-up does it).
"""

import importlib
import pkgutil

import librosa


def main() -> None:
    """Import every librosa submodule, which compiles (or loads) its cached numba kernels."""
    for module in pkgutil.walk_packages(librosa.__path__, "librosa."):
        importlib.import_module(module.name)


if __name__ == "__main__":
    main()
