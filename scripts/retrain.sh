#!/usr/bin/env bash
# The retraining job's steps that need no GitHub (retrain.yml runs exactly this; so can you):
# pull cached outputs from the DVC remote, run the Prefect flow (with params overrides), push the
# new outputs when asked, and write a summary: gate decision, `dvc metrics diff`, `dvc params diff`.
#
#   scripts/retrain.sh [-S key=value]... [--push] [--out DIR]
#
# Writes DIR/summary.md (PR body and job summary) and DIR/outputs (key=value lines, also appended
# to $GITHUB_OUTPUT when set): accepted, decision, uar, model_version, changed. Exit status is the flow's.
set -euo pipefail

out=retrain-out
flow_args=(--pull)
while [ $# -gt 0 ]; do
  case "$1" in
    -S) flow_args+=(-S "$2"); shift 2 ;;
    --push) flow_args+=(--push); shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "retrain.sh: unknown argument $1 (expected -S key=value, --push, --out DIR)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
base=$(git rev-parse --verify -q HEAD || true)

set +e
python -m flows.retrain run "${flow_args[@]}" 2>&1 | tee "$out/flow.log"
status=${PIPESTATUS[0]}
set -e

python - "$out" "$status" "$base" <<'PY'
"""Summarise the run: gate decision and the DVC diffs against the commit the run started from."""
import json
import subprocess
import sys
from pathlib import Path

out, status, base = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def read(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def dvc(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    return proc.stdout.strip() or proc.stderr.strip() or "(no differences)"


gate, metrics, package = read("reports/gate.json"), read("reports/metrics.json"), read("reports/package.json")
accepted = status == 0 and bool(gate.get("accepted", metrics.get("gates_passed", False)))
decision = "accepted" if accepted else "rejected" if gate or metrics else "failed before the gate"
rev = [base] if base else []
lines = [f"## Retrain: model {decision}", "", f"Flow exit status {status}.", ""]
if gate:
    lines += ["### Gate", "", *[f"- {r}" for r in gate.get("reasons", [])], ""]
lines += ["### Metrics (`dvc metrics diff`)", "", dvc("metrics", "diff", *rev, "--md"), ""]
lines += ["### Params (`dvc params diff`)", "", dvc("params", "diff", *rev, "--md"), ""]
if package:
    lines += [f"Packaged `{package.get('tag')}` (data md5 {package.get('dvc', {}).get('data/raw')}).", ""]
(out / "summary.md").write_text("\n".join(lines))
changed = subprocess.run(["git", "status", "--porcelain", "dvc.lock"], capture_output=True, text=True).stdout.strip()
outputs = {"accepted": str(accepted).lower(), "decision": decision, "uar": f"{metrics.get('uar', 0):.3f}",
           "model_version": package.get("version", "none"), "changed": str(bool(changed) and accepted).lower()}
(out / "outputs").write_text("".join(f"{k}={v}\n" for k, v in outputs.items()))
PY

if [ -n "${GITHUB_OUTPUT:-}" ]; then cat "$out/outputs" >> "$GITHUB_OUTPUT"; fi
exit "$status"
