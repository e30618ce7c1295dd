"""What every `ser` command shares: the app, the params option, and the stage wrapper (log setup, exit codes).

Exit codes: 0 ok, 1 a quality gate failed, 2 bad input (params, corpus, audio).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Speech emotion recognition: pipeline stages and tools.", no_args_is_help=True)
data_app = typer.Typer(help="Get or make corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]


# The errors that end a command with a clear line, by (module, class). An exception can only be of a
# class whose module was imported, so matching through sys.modules needs no import: a light command
# (`ser predict --url`) does not pay for TensorFlow to learn the names of errors it cannot raise.
GATE_ERRORS = [("ser.training.evaluate", "GateError"), ("ser.serving.package", "PackageError")]
INPUT_ERRORS = [
    ("ser.audio", "AudioError"),
    ("ser.serving.profiles", "CalibrationError"),
    ("ser.config", "ParamsError"),
    ("ser.data.contract", "ContractError"),
    ("ser.data.download", "DownloadError"),
    ("ser.data.eda", "EdaError"),
    ("ser.data.featurize", "FeaturizeError"),
    ("ser.data.ingest", "IngestError"),
    ("ser.data.clips", "SourceError"),
    ("ser.data.splits", "SplitError"),
    ("ser.labels", "LabelError"),
    ("ser.serving.predict", "PredictError"),
    ("ser.serving.export", "ExportError"),
    ("ser.training.onnx_export", "UnsupportedLayer"),
]


def is_one_of(err: BaseException, names: list[tuple[str, str]]) -> bool:
    """Whether `err` is an instance of one of the named classes (of modules already imported)."""
    return any(isinstance(err, getattr(sys.modules[m], c)) for m, c in names if m in sys.modules)


def stage(func: Callable) -> Callable:
    """Log to stderr and turn known errors into one clear line and an exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
        )
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if is_one_of(err, GATE_ERRORS):
                typer.echo(f"error: quality gate failed: {err}", err=True)
                raise typer.Exit(1) from None
            if is_one_of(err, INPUT_ERRORS):
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(2) from None
            raise

    return wrapper
