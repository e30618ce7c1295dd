"""Feature extraction on a Prefect task runner: local threads, processes, or a Dask cluster.

`featurize_flow` runs `ser.data.featurize.featurize` — the code of the `featurize` stage —
with its per-clip work (`clip_windows`) handed to the task runner that `params.flow`
names, in chunks of clips. Per-clip seeds make the arrays independent of the runner and
of the order work finishes in, so the result equals the DVC stage's.

    flow = featurize_flow.with_options(task_runner=make_task_runner(params.flow))
    flow(params_file, manifest, audio_dir, out)

A Dask cluster's workers import `ser` and `flows`: install the project on them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from ser.config import FlowParams, load_params
from ser.data.featurize import ClipJob, clip_windows, featurize

CHUNKS_PER_WORKER = 4  # several chunks per worker keep the workers evenly busy
_OPTIONS = {
    "--params": "params",
    "--manifest": "manifest",
    "--audio-dir": "audio_dir",
    "--out": "out",
    "--corpora": "corpora",
}


def make_task_runner(flow_params: FlowParams, local_processes: bool = True) -> TaskRunner[Any]:
    """The task runner `params.flow` asks for.

    `dask` connects to `flow.dask_address` when set, else starts a local cluster of
    `flow.workers` single-threaded workers for the run: worker processes, or threads of
    this process when `local_processes` is False (lighter, for tests).
    """
    if flow_params.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=flow_params.workers)
    if flow_params.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=flow_params.workers)
    from prefect_dask import DaskTaskRunner

    if flow_params.dask_address:
        return DaskTaskRunner(address=flow_params.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": flow_params.workers,
            "threads_per_worker": 1,
            "processes": local_processes,
            "dashboard_address": None,
        }
    )


def parse_featurize_cmd(cmd: str) -> dict[str, str] | None:
    """The paths of a `ser featurize --params P --manifest M --audio-dir A --out O --corpora C` command.

    None when the command has another form (then only DVC may run it as written).
    """
    argv = shlex.split(cmd)
    if argv[:2] != ["ser", "featurize"] or len(argv) % 2:
        return None
    pairs = dict(zip(argv[2::2], argv[3::2], strict=True))
    if not set(pairs) <= set(_OPTIONS):
        return None
    defaults = {
        "params": "params.yaml",
        "manifest": "data/manifest.csv",
        "audio_dir": "data/raw",
        "out": "data/features",
        "corpora": "data/corpora.json",
    }
    return defaults | {_OPTIONS[k]: v for k, v in pairs.items()}


@task(name="clip-windows", cache_policy=NO_CACHE)
def clip_chunk(jobs: list[ClipJob]) -> list[list[tuple]]:
    """Decode, window and augment one chunk of clips (`clip_windows` per clip)."""
    return [clip_windows(job) for job in jobs]


def runner_mapper(workers: int) -> Callable[[Callable, Iterable], Iterator]:
    """A `map` for `featurize` that submits chunks of clips to the flow's task runner."""

    def mapper(func: Callable, items: Iterable) -> Iterator:
        if func is not clip_windows:
            raise ValueError("runner_mapper only maps ser.data.featurize.clip_windows")
        jobs = list(items)
        n_chunks = max(1, min(len(jobs), workers * CHUNKS_PER_WORKER))
        size = -(-len(jobs) // n_chunks)
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        futures = clip_chunk.map(chunks)
        for future in futures:  # in submission order, so rows line up with the manifest
            yield from future.result()

    return mapper


@flow(name="featurize")
def featurize_flow(params_file: Path, manifest: Path, audio_dir: Path, out: Path, corpora: Path | None = None) -> dict:
    """Write the features of the `featurize` stage, clips spread over the task runner.

    Args:
        params_file: params.yaml to read.
        manifest: Manifest CSV written by ingest.
        audio_dir: Folder the manifest paths are relative to.
        out: Feature folder to write (replaced atomically).
        corpora: ingest's corpora.json (each corpus's use and record).

    Returns:
        Windows per split, as `ser.data.featurize.featurize` returns it.
    """
    params = load_params(params_file)
    mapper = runner_mapper(params.flow.workers)
    summary = featurize(params, Path(manifest), Path(audio_dir), Path(out), mapper=mapper, corpora_path=corpora)
    get_run_logger().info("featurized %s windows into %s", summary, out)
    return summary
