"""Cross-corpus `ser evaluate --corpus --labels`: any folder layout, a TSV of labels, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.cli import app
from ser.config import load_params
from tests.support import CLASSES, make_tiny_model, tone

RUN = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def corpus(tmp_path):
    """Six clips in a non-RAVDESS layout: two classes the model knows, one (calm) it does not."""
    root = tmp_path / "other"
    labels = {
        "spk1/a.wav": "neutral",
        "spk1/b.flac": "happy",
        "spk2/c.wav": "happy",
        "spk2/d.wav": "neutral",
        "spk2/long.wav": "neutral",
        "spk3/e.wav": "calm",
    }
    for i, rel in enumerate(labels):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, tone(4.0 if "long" in rel else 0.9, freq=150.0 + 60 * i), 16000)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("path\temotion\n# a comment\n" + "".join(f"{p}\t{e}\n" for p, e in labels.items()))
    return root, tsv


def args(model_dir, root, tsv, out):
    return [
        "evaluate",
        "--model-dir",
        str(model_dir),
        "--corpus",
        str(root),
        "--labels",
        str(tsv),
        "--metrics",
        str(out / "m.json"),
        "--predictions",
        str(out / "p.csv"),
        "--confusion-png",
        str(out / "c.png"),
    ]


def test_scores_a_labelled_folder(model_dir, corpus, tmp_path):
    root, tsv = corpus
    result = RUN.invoke(app, args(model_dir, root, tsv, tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    preds = pd.read_csv(tmp_path / "p.csv")
    # calm is not a class of the model: left out and counted; sad is absent: not part of UAR.
    assert metrics["excluded_labels"] == {"calm": 1} and metrics["n_test"] == 5 == len(preds)
    assert metrics["classes_in_corpus"] == ["happy", "neutral"]
    recalls = [metrics["per_class"][c]["recall"] for c in ("happy", "neutral")]
    assert metrics["uar"] == pytest.approx(sum(recalls) / 2)
    assert metrics["per_class"]["sad"]["support"] == 0
    assert metrics["accuracy"] == pytest.approx((preds["actual"] == preds["predicted"]).mean())
    assert set(preds.columns) >= {"path", "actual", "predicted", *CLASSES}
    assert (tmp_path / "c.png").stat().st_size > 0
    assert "UAR" in result.output and "neutral" in result.output  # the metrics table
    # Calibration and class balance, from the same probabilities as the predictions CSV.
    shares = preds["predicted"].value_counts(normalize=True)
    assert metrics["predicted_share"] == pytest.approx({c: shares.get(c, 0.0) for c in CLASSES})
    top = preds[CLASSES].max(axis=1)
    assert metrics["mean_confidence"] == pytest.approx(top.mean(), rel=1e-5) and 0 <= metrics["ece"] <= 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("spk1/a.wav\tfrustrated", "line 2: emotion 'frustrated' is neither one of ours"),
        ("spk1/missing.wav\thappy", "line 2: spk1/missing.wav not found under"),
        ("spk1/a.wav happy", "line 2: expected path<TAB>emotion, got 'spk1/a.wav happy'"),
        ("spk1/b.flac\tneutral", "line 2: spk1/b.flac is listed twice (first on line 1)"),
    ],
)
def test_bad_labels_name_the_line(model_dir, corpus, tmp_path, line, message):
    root, _ = corpus
    tsv = tmp_path / "bad.tsv"
    tsv.write_text(f"spk1/b.flac\thappy\n{line}\n")
    (tmp_path / "m.json").write_text("{}")
    result = RUN.invoke(app, args(model_dir, root, tsv, tmp_path))
    assert result.exit_code == 2 and message in result.output
    assert (tmp_path / "m.json").read_text() == "{}"  # nothing half-written


def test_a_labels_table_with_its_own_names_and_more_columns(model_dir, corpus, tmp_path):
    # the table a labelled source reads (speaker, gender, other columns) and the corpus's own emotion names
    root, _ = corpus
    table = tmp_path / "labels.csv"
    table.write_text(
        "path,emotion,speaker,gender,notes\n"
        "spk1/a.wav,neutral,spk1,m,x\nspk1/b.flac,joy,spk1,m,\nspk2/c.wav,joy,spk2,f,\nspk3/e.wav,bored,spk3,f,\n"
    )
    result = RUN.invoke(app, [*args(model_dir, root, table, tmp_path), "--map", "joy=happy", "--map", "bored="])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_test"] == 3 and metrics["classes_in_corpus"] == ["happy", "neutral"]
    bad = RUN.invoke(app, [*args(model_dir, root, table, tmp_path), "--map", "joy=glee"])
    assert bad.exit_code == 2 and "expected OWN=OURS" in bad.output


def test_unreadable_clip_is_listed_not_fatal(model_dir, corpus, tmp_path):
    root, tsv = corpus
    (root / "spk2/c.wav").write_bytes(b"not audio")
    result = RUN.invoke(app, args(model_dir, root, tsv, tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_test"] == 4 and "spk2/c.wav" in metrics["unreadable"][0]


def test_corpus_needs_labels(model_dir, corpus, tmp_path):
    root, _ = corpus
    result = RUN.invoke(app, ["evaluate", "--model-dir", str(model_dir), "--corpus", str(root)])
    assert result.exit_code == 2 and "--corpus and --labels go together" in result.output


@pytest.mark.realdata
def test_real_ravdess_as_another_corpus(model_dir, ravdess_dir, tmp_path):
    """The real files through the cross-corpus path: a TSV over 16 clips of two actors."""
    from ser.labels import parse_name

    files = sorted(ravdess_dir.glob("Actor_0[12]/*.flac"))[::12][:16]
    tsv = tmp_path / "ravdess.tsv"
    tsv.write_text("".join(f"{f.relative_to(ravdess_dir)}\t{parse_name(f.name).emotion}\n" for f in files))
    result = RUN.invoke(app, args(model_dir, ravdess_dir, tsv, tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    known = sum(parse_name(f.name).emotion in CLASSES for f in files)
    assert metrics["n_test"] == known and not metrics["unreadable"]


def test_calibrates_on_n_clips_of_the_corpus_and_scores_its_own_classes(corpus, tmp_path):
    """`--calibrate N` (labels unused, seeded: the same draw gives the same answers) and `--classes own` (the answer
    restricted to the corpus's known classes, renormalised)."""
    root, tsv = corpus
    model = make_tiny_model(tmp_path / "stats", stats_head=True)
    outs = {}
    calibrate = ["--calibrate", "3", "--calibrate-seed", "1"]
    for run, extra in {"plain": [], "cal": calibrate, "again": calibrate}.items():
        result = RUN.invoke(app, [*args(model, root, tsv, tmp_path / run), "--classes", "own", *extra])
        assert result.exit_code == 0, result.output
        outs[run] = json.loads((tmp_path / run / "m.json").read_text())
    assert outs["plain"]["answered_classes"] == ["neutral", "happy"] and outs["plain"]["calibration"] is None
    c = load_params("params.yaml").calibrate  # what `ser evaluate` read
    expected = {"clips": 3, "seed": 1, "shrink": c.shrink, "scale": c.scale, "head_share": c.head_share}
    assert outs["cal"]["calibration"] == expected
    assert set(outs["cal"]["predicted_share"]) == {"neutral", "happy"}
    predictions = pd.read_csv(tmp_path / "cal" / "p.csv")
    assert list(predictions.columns[3:]) == ["neutral", "happy"]
    assert predictions[["neutral", "happy"]].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "again" / "p.csv").read_text() == (tmp_path / "cal" / "p.csv").read_text()
