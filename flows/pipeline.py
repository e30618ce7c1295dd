"""The DVC side of the flow: read the pipeline from dvc.yaml, run and commit its stages.

Stages are listed in pipeline (topological) order, ties broken by their order in
dvc.yaml, so the flow follows whatever stages the file declares. DVC itself runs in a
subprocess (`python -m dvc`) with the interpreter's bin folder first on PATH, exactly
as `dvc repro` would run it from the shell; its output goes to the Prefect run log.

    for stage in read_pipeline(Path(".")):
        dvc(Path("."), "repro", "--single-item", stage.name)
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
BIN = str(Path(sys.executable).parent)


class StageFailed(RuntimeError):
    """A DVC command failed; the message ends with the tail of its output."""

    def __init__(self, args: list[str], code: int, output: str) -> None:
        self.code, self.output = code, output
        super().__init__(f"`dvc {' '.join(args)}` exited with {code}:\n{output[-3000:]}")


@dataclass(frozen=True)
class Out:
    """One stage output as dvc.yaml declares it."""

    path: str
    metric: bool = False
    plot: bool = False


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its DVC address, command, dependency paths and outputs."""

    name: str
    cmd: str
    deps: list[str] = field(default_factory=list)
    outs: list[Out] = field(default_factory=list)


def read_pipeline(repo: Path) -> list[Stage]:
    """The stages of the repository's pipeline in the order `dvc repro` runs them."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(repo)) as dvc_repo:
        stages = [s for s in dvc_repo.index.stages if isinstance(s, PipelineStage)]
        position = {id(s): i for i, s in enumerate(stages)}
        graph = dvc_repo.index.graph.reverse(copy=True)  # edges now run dependency -> dependent
        order = nx.lexicographical_topological_sort(graph, key=lambda s: f"{position.get(id(s), 0):06d}")

        def address(stage: PipelineStage) -> str:  # `name`, or `sub/dvc.yaml:name` outside the root file
            rel = os.path.relpath(stage.dvcfile.path, dvc_repo.root_dir)
            return stage.name if rel == "dvc.yaml" else f"{rel}:{stage.name}"

        return [
            Stage(
                name=address(s),
                cmd=" && ".join(s.cmd) if isinstance(s.cmd, list) else str(s.cmd),
                deps=[str(d.def_path) for d in s.deps],
                outs=[Out(str(o.def_path), bool(o.metric), bool(o.plot)) for o in s.outs],
            )
            for s in order
            if id(s) in position
        ]


def gate_last(stages: list[Stage], gate_file: str, names: tuple[str, ...] = ("package",)) -> list[Stage]:
    """The stages with those that need the gate (named in `names`, or reading `gate_file`) and
    everything downstream of them moved to the end; both groups keep their order."""
    post: set[str] = set()
    for stage in stages:  # topological order: a stage's upstream is seen first
        upstream = [o.path for s in stages if s.name in post for o in s.outs]
        if (
            stage.name in names
            or gate_file in stage.deps
            or any(d == p or d.startswith(f"{p}/") for d in stage.deps for p in upstream)
        ):
            post.add(stage.name)
    return [s for s in stages if s.name not in post] + [s for s in stages if s.name in post]


def subprocess_env() -> dict[str, str]:
    """The environment for DVC and stage commands: this interpreter's bin first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "2"}


def dvc(repo: Path, *args: str, logger: logging.Logger | logging.LoggerAdapter | None = None) -> str:
    """Run `dvc <args>` in `repo`; log and return its output.

    Raises:
        StageFailed: the command exited non-zero.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=subprocess_env(), capture_output=True, text=True
    )
    output = (proc.stdout + proc.stderr).strip()
    if output:
        (logger or log).info("dvc %s:\n%s", " ".join(args), output[-6000:])
    if proc.returncode:
        raise StageFailed(list(args), proc.returncode, output)
    return proc.stdout


def stage_changed(repo: Path, name: str) -> bool:
    """Whether `dvc status` reports the stage itself (not its upstream) as changed."""
    return bool(json.loads(dvc(repo, "status", "--json", name) or "{}"))


def read_lock(repo: Path) -> dict:
    """dvc.lock's stages (empty when there is no lock yet)."""
    path = repo / "dvc.lock"
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.is_file() else {}


def out_hash(repo: Path, stage: str, path: str | None = None) -> str | None:
    """The md5 dvc.lock records for an output of `stage` (its first output by default)."""
    outs = read_lock(repo).get(stage, {}).get("outs", [])
    for out in outs:
        if path is None or out["path"] == path:
            return out.get("md5")
    return None


def git_commit(repo: Path) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files differ from it; `unknown` outside git."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode:
        return "unknown (no commit)"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def apply_overrides(params_file: Path, overrides: list[str]) -> None:
    """Write `key=value` overrides into params.yaml, as `dvc exp run -S` does (comments kept).

    The result is validated; on a bad key or value the file is restored and ParamsError raised.
    """
    if not overrides:
        return
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as hydra_apply

    from ser.config import ParamsError, load_params

    original = params_file.read_text()
    try:
        hydra_apply(params_file, list(overrides))
        load_params(params_file)
    except (InvalidArgumentError, ParamsError) as err:
        params_file.write_text(original)
        raise ParamsError(f"override {list(overrides)} rejected: {err}") from None
