"""The `retrain` Prefect flow: the DVC pipeline as one orchestrated, recorded run with a release gate.

Tasks follow the stages of dvc.yaml in pipeline order — get data (`ingest`, optionally
after `dvc pull`), `validate_raw`, `featurize`, `validate_features`, `train`, `evaluate`,
the gate, then `package` and any later stage — skipping stages the file does not have.
Every stage runs through DVC (`dvc repro --single-item`), except `featurize`, whose
per-clip work goes to the task runner `params.flow.task_runner` names before
`dvc commit` records it; either way dvc.lock and the cache end as `dvc repro` leaves them.
I/O tasks (download, dvc pull/push) retry with exponential backoff; validation and the
gate never retry. A rejected model fails the run and nothing after the gate runs.

    python -m flows.retrain run -S train.epochs=5          # ephemeral API, no server needed
    python -m flows.retrain serve --cron "0 3 * * 1"       # needs `prefect server start`
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner
from prefect.tasks import exponential_backoff

from flows import gate as gates
from flows.features import featurize_flow, make_task_runner, parse_featurize_cmd
from flows.pipeline import (
    Stage,
    StageFailed,
    apply_overrides,
    dvc,
    gate_last,
    git_commit,
    out_hash,
    read_pipeline,
    stage_changed,
)
from ser.config import load_params

TRANSIENT = re.compile(
    r"Could not reach|HTTP (408|429|5\d\d)|broke off|ended early|timed? ?out|Connection|"
    r"Temporary failure",
    re.IGNORECASE,
)
VALIDATION = ("validate_raw", "validate_features")


def _transient(task: object, task_run: object, state: object) -> bool:
    """Retry condition of the get-data task: only network trouble is worth another try."""
    return bool(TRANSIENT.search(str(getattr(state, "message", "") or "")))


@task(name="dvc-pull")
def dvc_pull(repo: Path) -> None:
    """Fetch the cached outputs of the pipeline from the DVC remote (missing ones are rebuilt)."""
    dvc(repo, "pull", "--allow-missing", logger=get_run_logger())


@task(name="dvc-push")
def dvc_push(repo: Path) -> None:
    """Upload the run's outputs to the DVC remote."""
    dvc(repo, "push", logger=get_run_logger())


@task(name="get-data", retry_condition_fn=_transient)
def get_data(repo: Path, stage: Stage) -> str | None:
    """Run the ingest stage (downloads RAVDESS when `data.source: ravdess`); return the data version."""
    dvc(repo, "repro", "--single-item", stage.name, logger=get_run_logger())
    version = data_version(repo, stage)
    get_run_logger().info("data version (DVC md5 of %s): %s", stage.outs[0].path if stage.outs else "-", version)
    return version


def data_version(repo: Path, stage: Stage | None) -> str | None:
    """The md5 dvc.lock holds for the ingest stage's first output (the raw audio folder)."""
    return out_hash(repo, stage.name, stage.outs[0].path) if stage and stage.outs else None


@task(name="stage")
def run_stage(repo: Path, stage: Stage) -> None:
    """Run one stage through DVC (a no-op when it is up to date)."""
    dvc(repo, "repro", "--single-item", stage.name, logger=get_run_logger())


@task(name="dvc-commit")
def commit_stage(repo: Path, stage: Stage) -> None:
    """Record the outputs a flow task wrote for `stage` in dvc.lock and the DVC cache."""
    dvc(repo, "commit", "--force", stage.name, logger=get_run_logger())


@task(name="evaluate")
def evaluate(repo: Path, stage: Stage) -> str | None:
    """Run the evaluate stage; a miss of an absolute gate is returned for the gate task to publish."""
    try:
        dvc(repo, "repro", "--single-item", stage.name, logger=get_run_logger())
    except StageFailed as err:
        if "quality gate failed" not in err.output:
            raise
        return err.output
    return None


@task(name="gate")
def gate(repo: Path, stage: Stage, commit: str, version: str | None) -> dict:
    """Decide, publish (gate.json, artifacts) and raise GateRejected when the candidate may not ship."""
    metrics_out = next((o.path for o in stage.outs if o.metric), "reports/metrics.json")
    predictions = repo / next((o.path for o in stage.outs if o.path.endswith(".csv")), "reports/predictions.csv")
    metrics = json.loads((repo / metrics_out).read_text())
    model = next((d for d in stage.deps if out_hash(repo, "train", d)), None)
    candidate = {
        "model_md5": out_hash(repo, "train", model) if model else None,
        "split_id": gates.split_id(predictions),
        "data_version": version,
    }
    params = load_params(repo / "params.yaml").evaluate
    decision = gates.decide(metrics, params, gates.read_champion(repo), candidate)
    create_markdown_artifact(gates.gate_markdown(decision), key="retrain-gate", description="Release gate decision")
    create_table_artifact(
        gates.confusion_rows(predictions, list(metrics["per_class"])),
        key="retrain-confusion",
        description="Test confusion matrix: rows actual, columns predicted",
    )
    accepted = decision["accepted"]
    gates.save(repo, decision, gates.champion_record(decision, metrics, commit, flow_run.id) if accepted else None)
    get_run_logger().info("gate %s: %s", "accepted" if accepted else "REJECTED", "; ".join(decision["reasons"]))
    if not accepted:
        raise gates.GateRejected("; ".join(decision["reasons"]))
    return decision


def _featurize(repo: Path, stage: Stage, params_task_runner: TaskRunner[Any]) -> None:
    """Featurize on the task runner and commit, or through DVC when the stage's command is unfamiliar."""
    logger = get_run_logger()
    if not stage_changed(repo, stage.name):
        logger.info("stage %s is up to date, skipping", stage.name)
        return
    paths = parse_featurize_cmd(stage.cmd)
    if paths is None:
        logger.warning("featurize command %r is not the plain `ser featurize` form: running it through DVC", stage.cmd)
        run_stage.with_options(task_run_name=stage.name)(repo, stage)
        return
    runner = featurize_flow.with_options(task_runner=params_task_runner)
    runner(*(repo / paths[k] for k in ("params", "manifest", "audio_dir", "out", "corpora")))
    commit_stage.with_options(task_run_name=f"commit-{stage.name}")(repo, stage)


def _record(commit: str, version: str | None, params: dict, done: list[str]) -> None:
    """Publish the run record: commit, data version, stages run and the params."""
    create_markdown_artifact(
        f"## Retrain run\n\n| commit | data version | stages |\n|---|---|---|\n| {commit} | {version} | "
        f"{', '.join(done) or '-'} |\n\n```yaml\n{yaml.safe_dump(params, sort_keys=False)}```\n",
        key="retrain-run",
        description="Commit, DVC data version and params of this run",
    )


@flow(name="retrain")
def retrain(
    repo: Path = Path("."),
    overrides: list[str] | None = None,
    until: str | None = None,
    pull: bool = False,
    push: bool = False,
) -> dict:
    """Run the pipeline of dvc.yaml as Prefect tasks, gate the model, then package and push it.

    Args:
        repo: The project (git + DVC) to run in.
        overrides: `key=value` params overrides, written into params.yaml first (like `dvc exp run -S`).
        until: Stop after this stage (the gate still follows `evaluate`).
        pull: `dvc pull` cached outputs from the remote before running (retried).
        push: `dvc push` the outputs after an accepted run (retried).

    Returns:
        commit, data version, the stages run and the gate decision (None when not reached).
    """
    repo, logger = Path(repo).resolve(), get_run_logger()
    apply_overrides(repo / "params.yaml", overrides or [])
    params = load_params(repo / "params.yaml")
    stages = gate_last(read_pipeline(repo), gates.GATE_FILE)  # `package` (and what follows it) after the gate
    if until and until not in [s.name for s in stages]:
        raise ValueError(f"until: no stage {until!r} in dvc.yaml (stages: {[s.name for s in stages]})")
    commit, dumped = git_commit(repo), params.model_dump(mode="json", by_alias=True)
    logger.info("commit %s, stages %s, params %s", commit, [s.name for s in stages], json.dumps(dumped))
    fp = params.flow
    io: dict[str, Any] = {  # Task.with_options keywords: retries (int), retry_delay_seconds (backoff or 0)
        "retries": fp.retries,
        "retry_delay_seconds": exponential_backoff(fp.retry_delay_s) if fp.retries else 0,
    }
    version, decision, done = data_version(repo, next((s for s in stages if s.name == "ingest"), None)), None, []
    try:
        if pull:
            dvc_pull.with_options(**io, task_run_name="dvc-pull")(repo)
        for stage in stages:
            named: dict[str, Any] = {"task_run_name": stage.name}
            if stage.name == "ingest":
                version = get_data.with_options(**io, **named)(repo, stage)
            elif stage.name == "featurize":
                _featurize(repo, stage, make_task_runner(fp))
            elif stage.name == "evaluate":
                evaluate.with_options(**named)(repo, stage)
                decision = gate.with_options(task_run_name="gate")(repo, stage, commit, version)
            else:  # validation (never retried), train, package and any stage added later
                run_stage.with_options(name="validate" if stage.name in VALIDATION else "stage", **named)(repo, stage)
            done.append(stage.name)
            if stage.name == until:
                break
        if push:
            dvc_push.with_options(**io, task_run_name="dvc-push")(repo)
    finally:
        _record(commit, version, dumped, done)
    return {"commit": commit, "data_version": version, "stages": done, "gate": decision}


def run_once(
    repo: Path = Path("."),
    overrides: list[str] | None = None,
    until: str | None = None,
    pull: bool = False,
    push: bool = False,
) -> int:
    """Run the flow once (ephemeral API unless PREFECT_API_URL is set).

    Returns:
        The exit code, as `ser` uses them: 0 completed, 1 a stage or the gate failed, 2 bad params.
    """
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP
    from prefect.settings import temporary_settings

    with temporary_settings({STARTUP: max(STARTUP.value(), 120)}):  # a busy machine starts it slowly
        state = retrain(Path(repo).resolve(), overrides or [], until, pull, push, return_state=True)
    if not state.is_failed():
        return 0
    print(f"retrain failed: {state.message}", file=sys.stderr)
    return 2 if isinstance(state.result(raise_on_failure=False), ValueError) else 1  # ParamsError, bad --until


def serve(cron: str, name: str = "scheduled", **parameters: object) -> None:
    """Serve the flow as deployment `retrain/<name>` on a cron schedule (needs a Prefect server)."""
    parameters["repo"] = str(Path(str(parameters.get("repo", "."))).resolve())
    retrain.serve(name=name, cron=cron, parameters=parameters)


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.retrain run|serve`: run once (exit 0 ok, 1 failed), or serve on a schedule."""
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "serve"])
    parser.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, written into params.yaml first (as `dvc exp run -S`)",
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="project to run in")
    parser.add_argument("--until", default=None, help="stop after this stage")
    parser.add_argument("--pull", action="store_true", help="dvc pull before running")
    parser.add_argument("--push", action="store_true", help="dvc push after an accepted run")
    parser.add_argument("--cron", default="0 3 * * 1", help="serve: schedule (cron, server time zone)")
    parser.add_argument("--name", default="scheduled", help="serve: deployment name")
    args = parser.parse_args(argv)
    kwargs = {"repo": args.repo, "overrides": args.overrides, "until": args.until, "pull": args.pull, "push": args.push}
    if args.command == "serve":
        serve(args.cron, args.name, **kwargs)
        return 0
    return run_once(**kwargs)


if __name__ == "__main__":
    sys.exit(main())
