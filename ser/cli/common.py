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


def _input_errors() -> tuple[type[Exception], ...]:
    from ser.audio import AudioError
    from ser.config import ParamsError
    from ser.data.contract import ContractError
    from ser.data.download import DownloadError
    from ser.data.eda import EdaError
    from ser.data.featurize import FeaturizeError
    from ser.data.ingest import IngestError
    from ser.data.splits import SplitError
    from ser.labels import LabelError
    from ser.serving.predict import PredictError

    return (
        AudioError,
        ParamsError,
        ContractError,
        DownloadError,
        EdaError,
        FeaturizeError,
        IngestError,
        LabelError,
        PredictError,
        SplitError,
    )


def stage(func: Callable) -> Callable:
    """Log to stderr and turn known errors into one clear line and an exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
        )
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ser.serving.package import PackageError
        from ser.training.evaluate import GateError

        try:
            return func(*args, **kwargs)
        except (GateError, PackageError) as err:
            typer.echo(f"error: quality gate failed: {err}", err=True)
            raise typer.Exit(1) from None
        except _input_errors() as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper
