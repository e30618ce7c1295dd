"""The data contract: Great Expectations suites, defined in code, and a small runner.

Each check is one GX 1.x expectation tagged with a stable key (`duration`,
`unique_content`, `speaker_one_split`, ...). Rules GX cannot state directly become
derived columns first (labels re-parsed from the file name, per-speaker split
counts, per-class counts) so every rule shows up in one GX result. Rules of one naming
scheme (RAVDESS's name fields) carry a GX row condition, so they judge only that scheme's clips. `run_suite`
validates a DataFrame on an ephemeral context (no GX project on disk) and returns
plain `CheckResult`s naming the offending rows; `ser.data.validate` turns them into
the stage's report, quarantine list and error.

    results = run_suite("raw clips", derive(manifest), clip_checks(params.contract), "path", "clip")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from ser.config import FeatureParams, ValidateParams
from ser.data.ingest import FLOAT_COLUMNS, INTEGER_COLUMNS, MANIFEST_COLUMNS, TEXT_COLUMNS
from ser.features import feature_kind
from ser.labels import EMOTIONS, INTENSITIES, LabelError, parse_name

SPLITS = ("train", "val", "test")
RAVDESS_ROWS = 'scheme=="ravdess"'  # the RAVDESS name checks apply to RAVDESS-named corpora only (and synthetic)
#: Unique-value checks: in quarantine mode only the later copies leave, the first one stays.
KEEP_FIRST = {"unique_clip_id": "clip_id", "unique_content": "sha256"}


class ContractError(ValueError):
    """The data broke the contract; the message names each failed expectation and the offenders."""


@dataclass
class CheckResult:
    """One expectation's outcome, reduced to what the report and the error need."""

    suite: str
    key: str
    expectation: str
    scope: str  # "clip": the offenders are clips (quarantinable); "table": a whole-corpus property
    success: bool
    element_count: int = 0
    unexpected_count: int = 0
    offending: list[str] = field(default_factory=list)  # the offending rows' labels (clip paths for clips)
    values: list[str] = field(default_factory=list)  # each offender's checked value(s), e.g. "sample_rate=8000"
    observed: str | None = None  # what GX saw, for checks on the whole table (e.g. missing columns, a dtype)
    error: str | None = None


def describe(config: dict) -> str:
    """`expect_x(column, key=value, ...) where <rows>` from a GX expectation configuration."""
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format", "condition_parser")}
    condition = kwargs.pop("row_condition", None)
    args = [str(kwargs.pop(k)) for k in ("column", "column_A", "column_B") if k in kwargs]
    args += [f"{k}={v}" for k, v in kwargs.items() if v is not None]
    where = (condition.get("pass_through_filter") if isinstance(condition, dict) else condition) or ""
    return f"{config['type']}({', '.join(args)})" + (f" where {where}" if where else "")


def run_suite(suite: str, frame: pd.DataFrame, checks: list, label: str, scope: str) -> list[CheckResult]:
    """Validate `frame` against `checks` (key, expectation) pairs; offenders are named by column `label`."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(suite)
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    for key, expectation in checks:
        expectation.meta = {"key": key}
    gx_suite = gx.ExpectationSuite(name=suite, expectations=[e for _, e in checks])
    fmt = {"result_format": "COMPLETE", "unexpected_index_column_names": [label]}
    by_key = {}
    for res in batch.validate(gx_suite, result_format=fmt).results:
        d = res.to_json_dict()
        config, info, result = d["expectation_config"], d.get("exception_info") or {}, d.get("result") or {}
        errors = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
        errors.append(info.get("exception_message"))  # GX nests errors per metric, or not
        rows = [r for r in result.get("unexpected_index_list") or [] if isinstance(r, dict)]
        key = config["meta"]["key"]
        by_key[key] = CheckResult(
            suite,
            key,
            describe(config),
            scope,
            bool(d["success"]),
            element_count=int(result.get("element_count") or len(frame)),
            unexpected_count=int(result.get("unexpected_count") or 0),
            offending=[str(r[label]) for r in rows],
            values=[", ".join(f"{k}={v}" for k, v in r.items() if k != label) for r in rows],
            observed=_observed(result),
            error=next((e for e in errors if e), None),
        )
    return [by_key[key] for key, _ in checks]


def _observed(result: dict) -> str | None:
    """GX's observed value for table-level results (column mismatches rather than the whole column list)."""
    mismatched = (result.get("details") or {}).get("mismatched")
    observed = mismatched if mismatched else result.get("observed_value")
    return None if observed is None else str(observed)


def schema_checks(present: list[str]) -> list:
    """Manifest columns, exactly as ingest writes them, and the type of each `present` one."""
    E = _expectations()
    checks = [("columns", E.ExpectTableColumnsToMatchSet(column_set=MANIFEST_COLUMNS, exact_match=True))]
    checks += [
        (f"type_{c}", E.ExpectColumnValuesToBeInTypeList(column=c, type_list=["int64", "Int64", "float64"]))
        for c in INTEGER_COLUMNS + FLOAT_COLUMNS
        if c in present
    ]
    checks += [
        (f"type_{c}", E.ExpectColumnValuesToBeInTypeList(column=c, type_list=["str"]))
        for c in TEXT_COLUMNS
        if c in present
    ]
    if "name_ok" in present:
        checks.append(("type_name_ok", E.ExpectColumnValuesToBeInTypeList(column="name_ok", type_list=["bool"])))
    return checks


def as_checked(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with text columns as Python objects (GX then type-checks each value)."""
    out = manifest.copy()
    for col in set(TEXT_COLUMNS) & set(out.columns):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _labels_match(row: pd.Series) -> bool | None:
    """Whether a RAVDESS-named clip's labels equal what its file name encodes; None for other schemes and
    unparsable names (their own checks cover them)."""
    if row["scheme"] != "ravdess":
        return None
    try:
        name = parse_name(str(row["path"]).rsplit("/", 1)[-1])
    except LabelError:
        return None
    fields = ("emotion", "intensity", "statement", "repetition", "actor", "gender")
    got = (row["clip_id"], row["speaker"], *(row[f] for f in fields))
    corpus = row["corpus"]
    want = (f"{corpus}:{name.clip_id}", f"{corpus}:{name.actor:02d}", *(getattr(name, f) for f in fields))
    return all((pd.isna(g) and w is None) or (not pd.isna(g) and g == w) for g, w in zip(got, want, strict=True))


def derive(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus the derived column the clip suite needs (`labels_match_name`)."""
    out = manifest.copy()
    for col in INTEGER_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    out["labels_match_name"] = pd.Series([_labels_match(r) for _, r in out.iterrows()], index=out.index, dtype=object)
    return out


def clip_checks(c: ValidateParams) -> list:
    """Per-clip rules on the derived manifest; a clip failing any of them can be quarantined.

    Every corpus: decodes, complete, its own naming scheme, an emotion of ours, a speaker, unique clip and
    content, and the signal bounds. RAVDESS-named corpora also: each field of the name (`RAVDESS_ROWS`).
    """
    E = _expectations()
    between, pair = E.ExpectColumnValuesToBeBetween, E.ExpectColumnPairValuesToBeEqual
    either = "either_value_is_missing"

    def ravdess(expectation, **kwargs):
        return expectation(**kwargs, row_condition=RAVDESS_ROWS, condition_parser="pandas")

    return [
        ("decodes", E.ExpectColumnValuesToBeNull(column="decode_error")),
        ("complete", pair(column_A="frames_decoded", column_B="frames_declared", ignore_row_if=either)),
        ("name_format", E.ExpectColumnValuesToBeInSet(column="name_ok", value_set=[True])),
        ("emotion", E.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS))),
        ("emotion_present", E.ExpectColumnValuesToNotBeNull(column="emotion")),
        ("speaker_present", E.ExpectColumnValuesToNotBeNull(column="speaker")),
        ("emotion_code", ravdess(E.ExpectColumnValuesToBeInSet, column="emotion_code", value_set=list(range(1, 9)))),
        ("intensity", ravdess(E.ExpectColumnValuesToBeInSet, column="intensity", value_set=list(INTENSITIES))),
        ("modality", ravdess(E.ExpectColumnValuesToBeInSet, column="modality", value_set=[3])),
        ("vocal_channel", ravdess(E.ExpectColumnValuesToBeInSet, column="vocal_channel", value_set=[1])),
        ("statement", ravdess(E.ExpectColumnValuesToBeInSet, column="statement", value_set=[1, 2])),
        ("repetition", ravdess(E.ExpectColumnValuesToBeInSet, column="repetition", value_set=[1, 2])),
        ("actor_range", ravdess(between, column="actor", min_value=c.actors[0], max_value=c.actors[1])),
        ("in_actor_folder", ravdess(E.ExpectColumnValuesToNotBeNull, column="folder_actor")),
        ("actor_matches_folder", ravdess(pair, column_A="actor", column_B="folder_actor", ignore_row_if=either)),
        ("labels_match_name", ravdess(E.ExpectColumnValuesToBeInSet, column="labels_match_name", value_set=[True])),
        ("unique_clip_id", E.ExpectColumnValuesToBeUnique(column="clip_id")),
        ("unique_content", E.ExpectColumnValuesToBeUnique(column="sha256")),
        ("sample_rate", E.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=list(c.sample_rates))),
        ("channels", between(column="channels", min_value=1, max_value=c.channels)),
        ("duration", between(column="duration_s", min_value=c.min_duration, max_value=c.max_duration)),
        ("not_silent", between(column="rms_dbfs", min_value=c.min_rms_dbfs)),
        ("not_clipped", between(column="clip_ratio", max_value=c.max_clip_ratio)),
    ]


def split_tables(clips: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-speaker split membership and per-(split, class) clip counts from clip/speaker/emotion/split rows."""
    clips = clips.drop_duplicates("clip_id") if "clip_id" in clips else clips
    speakers = clips.groupby("speaker")["split"].agg(lambda s: "+".join(sorted(set(s)))).reset_index(name="splits")
    speakers["n_splits"] = speakers["splits"].str.count(r"\+") + 1
    speakers["label"] = [f"speaker {a} in {s}" for a, s in zip(speakers["speaker"], speakers["splits"], strict=True)]
    grid = pd.MultiIndex.from_product([SPLITS, classes], names=["split", "emotion"])
    cells = clips.groupby(["split", "emotion"]).size().reindex(grid, fill_value=0).reset_index(name="clips")
    cells["label"] = cells["split"] + "/" + cells["emotion"]
    return speakers, cells


def check_splits(
    clips: pd.DataFrame, classes: list[str], suite: str = "splits", speaker_independent: bool = True
) -> list[CheckResult]:
    """No speaker in two splits and every class in every split, for a table with speaker/emotion/split columns.

    `speaker_independent=False` (the article's random split, where speakers leak by design) drops the speaker
    check.
    """
    E = _expectations()
    speakers, cells = split_tables(clips, classes)
    one = [("speaker_one_split", E.ExpectColumnValuesToBeBetween(column="n_splits", min_value=1, max_value=1))]
    every = [("class_in_every_split", E.ExpectColumnValuesToBeBetween(column="clips", min_value=1))]
    results = run_suite(suite, speakers, one, "label", "table") if speaker_independent else []
    return results + run_suite(f"{suite} (classes)", cells, every, "label", "table")


def check_balance(clips: pd.DataFrame, classes: list[str], c: ValidateParams) -> list[CheckResult]:
    """Each class's clip count relative to the mean count lies within `validate.class_balance`."""
    counts = clips["emotion"].value_counts().reindex(classes, fill_value=0)
    table = pd.DataFrame({"emotion": classes, "clips": counts.to_numpy()})
    table["ratio"] = table["clips"] / max(table["clips"].mean(), 1e-9)
    table["label"] = [f"{e} ({n} clips, {r:.2f}x mean)" for e, n, r in table[["emotion", "clips", "ratio"]].values]
    lo, hi = c.class_balance
    check = ("class_balance", _expectations().ExpectColumnValuesToBeBetween(column="ratio", min_value=lo, max_value=hi))
    return run_suite("class balance", table, [check], "label", "table")


def window_checks(c: ValidateParams, features: FeatureParams, n_classes: int) -> list:
    """Per-window rules on the feature arrays (one row per window: shape, dtype, value summary).

    The value rules are the feature kind's own (`FeatureKind.value_rules`): dB bounds for log-mels,
    variation within every window for encoder states.
    """
    E = _expectations()
    between = E.ExpectColumnValuesToBeBetween
    rules = feature_kind(features.kind).value_rules(features, c.feature_db_range)
    values = [(r.key, between(column=r.column, min_value=r.min_value, max_value=r.max_value)) for r in rules]
    return [
        ("shape", E.ExpectColumnValuesToBeInSet(column="shape_ok", value_set=[True])),
        ("dtype", E.ExpectColumnValuesToBeInSet(column="dtype", value_set=["float32"])),
        ("finite", between(column="nonfinite", min_value=0, max_value=0)),
        *values,
        ("label_range", between(column="y", min_value=0, max_value=n_classes - 1)),
    ]


def stats_checks(c: ValidateParams, n_mels: int) -> list:
    """Normalisation statistics (one row per mel bin): finite, one per bin, no zero-variance bin."""
    E = _expectations()
    return [
        ("stats_bins", E.ExpectTableRowCountToEqual(value=n_mels)),
        ("mean_finite", E.ExpectColumnValuesToNotBeNull(column="mean")),
        ("variance_finite", E.ExpectColumnValuesToNotBeNull(column="variance")),
        ("variance_positive", E.ExpectColumnValuesToBeBetween(column="variance", min_value=c.min_feature_variance)),
    ]


def _gx():
    """`great_expectations`, imported on first use (the import takes seconds), its INFO chatter silenced."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # hundreds of INFO lines on import
    import great_expectations as gx

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)  # GX sets INFO
    return gx


def _expectations():
    """`great_expectations.expectations` (the classes the suites are built from)."""
    return _gx().expectations
