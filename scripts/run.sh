#!/usr/bin/env bash
# `make run`: the whole pipeline on the checkout's params, as one DVC experiment in a temporary copy
# (`dvc exp run --temp`), so the checkout stays exactly as committed (`git status` prints nothing).
#
#   scripts/run.sh [-S key=value]...
#
# The run's record (dvc.lock, params, metrics) is the experiment `run-<date>-<time>` (`dvc exp show`);
# its outputs (DVC cache) are copied to runs/<name>/ (git-ignored): reports/ (metrics, confusion
# matrix, training curves, EDA and data-contract reports, model card) and models/. The packaged model
# is in the BentoML model store, as with `dvc repro`. Tracked files of the checkout run as they are
# in the working tree (edited or not); a new file must be `git add`ed first. To make a run the
# workspace's state instead: `dvc exp apply <name>` (then commit), or run `dvc repro` directly.
set -euo pipefail

name="run-$(date +%Y%m%d-%H%M%S)"
dvc exp run --temp --name "$name" "$@"

ref=$(git for-each-ref --format='%(refname)' "refs/exps/*/*/$name")
dest="runs/$name"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
git archive "$ref" dvc.lock params.yaml | tar -x -C "$dest.tmp"
# The outputs a user looks at (the stages' outs under reports/ and models/, as the run's dvc.lock
# lists them), from the experiment's commit and the DVC cache; the corpus and features stay cached.
outs=$(python - "$dest.tmp/dvc.lock" <<'PY'
import sys, yaml
stages = yaml.safe_load(open(sys.argv[1]))["stages"].values()
print("\n".join(sorted({o["path"] for s in stages for o in s.get("outs", []) if o["path"].startswith(("reports/", "models"))})))
PY
)
for out in $outs; do
  mkdir -p "$(dirname "$dest.tmp/$out")"
  dvc get . "$out" --rev "$ref" -o "$dest.tmp/$out" >/dev/null
done
rm -rf "$dest" && mv "$dest.tmp" "$dest"
rm -f runs/latest && ln -s "$name" runs/latest

python - "$dest/reports/metrics.json" "$name" "$dest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"\nrun {sys.argv[2]}: test accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f} (n = {m['n_test']}); "
      f"outputs in {sys.argv[3]}/ (also runs/latest/): reports/metrics.json, reports/eda/index.html, ...")
PY
