"""The `validate` stages: the data contract as a blocking gate before training.

`validate_raw` checks the ingest manifest (schema, per-clip rules, class balance,
and the speaker split of the clips that pass) and writes the accepted manifest
that `featurize` reads. `validate_features` checks the featurize output (shape,
dtype, finite values, log-mel range, normalisation statistics, split leakage).
Both write a JSON result (`dvc metrics show`) and an HTML report, then raise
`ContractError` naming each failed expectation and its offending clips. With
`validate.mode: quarantine`, clips failing per-clip rules are listed in the
quarantine CSV and left out of the accepted manifest (nothing is deleted); split
and balance failures stop the pipeline in both modes. The rules: `ser.data.contract`.

    ser validate raw --params params.yaml --manifest data/manifest.csv ...
    ser validate features --params params.yaml --features data/features ...
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ser.config import Params
from ser.data import contract
from ser.data.contract import SPLITS, CheckResult, ContractError, run_suite
from ser.data.ingest import read_manifest
from ser.data.splits import SplitError, assign_splits
from ser.features import feature_kind
from ser.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
MAX_LISTED = 50  # offenders per expectation in the JSON result and the error message (all in the HTML)


def offenders(derived: pd.DataFrame, results: list[CheckResult]) -> dict[str, list[str]]:
    """Clip path -> keys of the per-clip checks it fails; duplicates keep their first copy."""
    bad: dict[str, list[str]] = {}
    for r in results:
        if r.success or r.scope != "clip":
            continue
        paths = r.offending
        if r.key in contract.KEEP_FIRST:
            col = derived[contract.KEEP_FIRST[r.key]]
            paths = derived.loc[col.notna() & col.duplicated(keep="first"), "path"].tolist()
        for path in paths:
            bad.setdefault(path, []).append(r.key)
    return bad


def table_checks(params: Params, clean: pd.DataFrame, uses: dict[str, str] | None = None) -> list[CheckResult]:
    """Class balance and the split checks on the clips that passed, restricted to the class set (`data.classes`,
    or the union of the corpora's); `uses`: corpus -> all/train/test."""
    classes = params.data.class_set(clean["emotion"].dropna())
    usable = clean[clean["emotion"].isin(classes)].reset_index(drop=True)
    try:
        usable["split"] = assign_splits(usable, params.split, uses).to_numpy()
    except (SplitError, KeyError) as err:
        failed = CheckResult(
            "splits",
            "splits_assignable",
            "ser.data.splits.assign_splits(split.*)",
            "table",
            False,
            len(usable),
            error=str(err),
        )
        return contract.check_balance(usable, classes, params.contract) + [failed]
    speaker = params.split.method == "speaker"
    return contract.check_balance(usable, classes, params.contract) + contract.check_splits(
        usable, classes, speaker_independent=speaker
    )


def validate_raw(
    params: Params,
    manifest_path: Path,
    accepted_path: Path,
    quarantine_path: Path,
    result_path: Path,
    report_path: Path,
    corpora_path: Path | None = None,
) -> dict:
    """Run the raw-corpus contract; write the accepted manifest, quarantine CSV, JSON result, HTML report.

    `corpora_path`: ingest's corpora.json, whose `use` makes a corpus train- or test-only in the split checks.

    Returns:
        The JSON result as a dict.

    Raises:
        ContractError: a check failed (in quarantine mode: a table-level check), after the reports are written.
    """
    start, mode = time.perf_counter(), params.contract.mode
    manifest = read_manifest(manifest_path)
    uses = {c["name"]: c.get("use", "all") for c in read_json(corpora_path)} if corpora_path else {}
    if "path" not in manifest:
        raise ContractError(f"{manifest_path}: no 'path' column; is this a manifest written by `ser ingest`?")
    schema = contract.schema_checks(list(manifest.columns))
    results = run_suite("manifest schema", contract.as_checked(manifest), schema, "path", "table")
    bad: dict[str, list[str]] = {}
    if all(r.success for r in results):
        derived = contract.derive(manifest)
        clip_results = run_suite("raw clips", derived, contract.clip_checks(params.contract), "path", "clip")
        bad = offenders(derived, clip_results)
        results += clip_results + table_checks(params, manifest[~manifest["path"].isin(bad)], uses)
    quarantined = bad if mode == "quarantine" else {}
    blocking = [r for r in results if not r.success and (r.scope != "clip" or mode == "fail")]
    accepted = 0 if blocking else len(manifest) - len(quarantined)
    summary = {
        "stage": "validate_raw",
        "success": not blocking,
        "mode": mode,
        "clips": len(manifest),
        "accepted": accepted,
        "quarantined": len(quarantined),
    }
    result = write_reports(summary, results, start, result_path, report_path, quarantined)
    if blocking:
        raise ContractError(error_message(blocking, result_path, report_path, len(quarantined)))
    with atomic_path(accepted_path) as tmp:
        manifest[~manifest["path"].isin(quarantined)].to_csv(tmp, index=False)
    rows = [{"path": p, "clip_id": Path(p).stem, "failed": " ".join(keys)} for p, keys in quarantined.items()]
    with atomic_path(quarantine_path) as tmp:
        pd.DataFrame(rows, columns=["path", "clip_id", "failed"]).to_csv(tmp, index=False)
    if quarantined:
        log.warning("quarantined %d clip(s), listed in %s", len(quarantined), quarantine_path)
    log.info("raw contract passed: %d of %d clips accepted", accepted, len(manifest))
    return result


def window_table(features_dir: Path, shape: tuple[int, ...]) -> pd.DataFrame:
    """One row per feature window: its label, shape/dtype verdicts and a finite-value summary."""
    frames = []
    for split in SPLITS:
        with np.load(features_dir / f"{split}.npz") as d:
            x, clip_ids, copies, y = d["x"], d["clip_id"], d["copy"], d["y"]
        flat = x.reshape(len(x), -1)
        flat = flat if np.issubdtype(flat.dtype, np.floating) else flat.astype(np.float32)
        finite = np.isfinite(flat)
        nonfinite = (~finite).sum(1)
        lo, hi = flat.min(1).astype(np.float64), flat.max(1).astype(np.float64)
        for i in np.flatnonzero(nonfinite):  # rare: summarise the finite values of that window only
            vals = flat[i][finite[i]]
            lo[i], hi[i] = (vals.min(), vals.max()) if vals.size else (np.nan, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "label": [f"{split}/{c}#{k}" for c, k in zip(clip_ids, copies, strict=True)],
                    "shape_ok": tuple(x.shape[1:]) == shape,
                    "dtype": str(x.dtype),
                    "nonfinite": nonfinite,
                    "min_db": lo,
                    "max_db": hi,
                    "span_db": hi - lo,
                    "y": y,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def validate_features(params: Params, features_dir: Path, result_path: Path, report_path: Path) -> dict:
    """Run the feature contract on featurize's output; write the JSON result and the HTML report.

    Raises:
        ContractError: a check failed, after the reports are written.
    """
    start = time.perf_counter()
    stats = read_json(features_dir / "stats.json")
    # the shape the feature kind promises for these params (featurize's own record must agree)
    shape, classes = feature_kind(params.features.kind).shape(params.features), list(stats["classes"])
    windows = window_table(features_dir, shape)
    bins = pd.DataFrame({"mean": stats["mean"], "variance": stats["variance"]}, dtype="float64")
    bins = bins.where(np.isfinite(bins))
    bins["label"] = [f"mel bin {i}" for i in range(len(bins))]
    index = pd.read_csv(features_dir / "index.csv")
    c = params.contract
    checks = contract.window_checks(c, params.features, len(classes))
    results = run_suite("feature windows", windows, checks, "label", "window")
    results += run_suite("normalisation stats", bins, contract.stats_checks(c, shape[-1]), "label", "table")
    results += contract.check_splits(
        index, classes, suite="feature splits", speaker_independent=params.split.method == "speaker"
    )
    failed = [r for r in results if not r.success]
    summary = {"stage": "validate_features", "success": not failed, "windows": len(windows), "shape": list(shape)}
    result = write_reports(summary, results, start, result_path, report_path, {})
    if failed:
        raise ContractError(error_message(failed, result_path, report_path, 0))
    log.info("feature contract passed: %d windows of shape %s", len(windows), shape)
    return result


def error_message(failed: list[CheckResult], result_path: Path, report_path: Path, quarantined: int) -> str:
    """One line per failed expectation with its offenders, then where the reports are."""
    lines = [f"data contract broken: {len(failed)} expectation(s) failed"]
    for r in failed:
        listed = ", ".join(_named(r)[:MAX_LISTED]) + (" ..." if len(r.offending) > MAX_LISTED else "")
        what = r.error or f"{r.unexpected_count} of {r.element_count} {'clips' if r.scope == 'clip' else 'rows'}"
        if r.observed and not r.offending and not r.error:
            what = f"observed {r.observed}"
        lines.append(f"  [{r.key}] {r.expectation} ({r.suite}): {what}" + (f": {listed}" if listed else ""))
    if quarantined:
        lines.append(f"  ({quarantined} clip(s) would be quarantined; the failures above are not per clip)")
    lines.append(f"  result: {result_path}  report: {report_path}")
    return "\n".join(lines)


def _named(r: CheckResult) -> list[str]:
    """Offenders with the values that broke the rule: `Actor_01/x.wav (sample_rate=8000)`."""
    return [f"{o} ({v})" if v else o for o, v in zip(r.offending, r.values or [""] * len(r.offending), strict=True)]


def write_reports(
    summary: dict,
    results: list[CheckResult],
    start: float,
    result_path: Path,
    report_path: Path,
    quarantined: dict[str, list[str]],
) -> dict:
    """Write the JSON result and the HTML report; return the JSON result."""
    failed = [r for r in results if not r.success]
    # Scalars and the `unexpected` counts show in `dvc metrics show`; it skips lists, so the details go in lists.
    result = {
        **summary,
        "expectations": len(results),
        "failed_expectations": len(failed),
        "seconds": round(time.perf_counter() - start, 2),
        "unexpected": {r.key: r.unexpected_count or 1 for r in failed},
        "failed": [r.key for r in failed],
        "checks": [
            {
                "key": r.key,
                "suite": r.suite,
                "expectation": r.expectation,
                "success": r.success,
                "unexpected_count": r.unexpected_count,
                "observed": r.observed,
                "error": r.error,
                "offending": r.offending[:MAX_LISTED],
                "values": r.values[:MAX_LISTED],
            }
            for r in results
        ],
    }
    write_json(result_path, result)
    with atomic_path(report_path) as tmp:
        tmp.write_text(render_html(result, results, quarantined))
    return result


def render_html(result: dict, results: list[CheckResult], quarantined: dict[str, list[str]]) -> str:
    """A self-contained HTML page: summary, one table per suite, the quarantine list."""
    e = html.escape
    verdict = "PASSED" if result["success"] else "FAILED"
    head = ", ".join(f"{k}: {e(str(v))}" for k, v in result.items() if k not in ("checks", "stage", "unexpected"))
    parts = [f"<h1>{e(result['stage'])}: {verdict}</h1><p>{head}</p>"]
    for suite in dict.fromkeys(r.suite for r in results):
        rows = []
        for r in (r for r in results if r.suite == suite):
            sample = "<br>".join(e(o) for o in _named(r)[:200]) + (" ..." if len(r.offending) > 200 else "")
            detail = f"<details><summary>{len(r.offending)} listed</summary>{sample}</details>" if r.offending else ""
            detail += e(r.observed or "") if not r.success and not r.offending else ""
            rows.append(
                f"<tr class={'ok' if r.success else 'bad'}><td>{e(r.key)}</td><td><code>{e(r.expectation)}"
                f"</code></td><td>{'pass' if r.success else 'FAIL'}</td><td>{r.unexpected_count}</td>"
                f"<td>{e(r.error or '')}{detail}</td></tr>"
            )
        parts.append(
            f"<h2>{e(suite)}</h2><table><tr><th>check</th><th>expectation</th><th>result</th>"
            f"<th>unexpected</th><th>offending</th></tr>{''.join(rows)}</table>"
        )
    if quarantined:
        items = "".join(f"<li>{e(p)}: {e(', '.join(k))}</li>" for p, k in quarantined.items())
        parts.append(f"<h2>Quarantined clips ({len(quarantined)}, not deleted)</h2><ul>{items}</ul>")
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top;text-align:left}tr.bad{background:#fdd}tr.ok td:nth-child(3)"
        "{color:#070}"
    )
    title = e(result["stage"])
    return f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>{style}</style></head>" + (
        f"<body>{''.join(parts)}</body></html>\n"
    )
