"""The `ser` command: one CLI app over the pipeline stages and data tools.

Each stage command is what `dvc.yaml` runs (`ser.cli.stages`); the tools (`ser.cli.tools`) predict,
serve, get corpora and run the retrain flow. Exit codes: 0 ok, 1 a quality gate failed, 2 bad input
(params, corpus, audio).

    ser --help
    ser ingest --params params.yaml --out data/raw --manifest data/manifest.csv
"""

from __future__ import annotations

from ser.cli import stages, tools  # noqa: F401 - importing them registers their commands on `app`
from ser.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point for `ser` and `python -m ser`."""
    app()
