"""The feature-kind registry: one entry per `features.kind`, and everything that differs between kinds.

A kind is one representation of an audio window that the model reads (`logmel`: a log-mel
spectrogram; `whisper_base`: frozen Whisper-base encoder states). Each kind is a `FeatureKind`
subclass in its own module and owns, in one place: the params it accepts (`check`), its extraction
(`extract`) and output shape (`shape`), the data contract's rules on its values (`value_rules`),
what a packaged model must carry besides `model.keras` (`package_files`, `use_packaged`) and the
model card's sentence about it (`describe`). Stages never branch on the kind's name; they ask
`feature_kind(params.kind)`.

Adding a kind is one new module with a `FeatureKind` subclass and one line in `KINDS` below
(`docs/layout.md` shows an example). The table names classes by import path, so this module imports
nothing of `ser` and `ser.config` can check `features.kind` against it without an import cycle.

    kind = feature_kind("logmel")
    feats = kind.extract(np.stack(windows), params.features)   # (clips, frames, width)
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from ser.config import FeatureParams
    from ser.features.frontend import Frontend
    from ser.features.onnx_ops import Graph

# name -> "module:class". The one place a kind is registered.
KINDS: dict[str, str] = {
    "logmel": "ser.features.logmel:LogMel",
    "whisper_base": "ser.features.whisper:WhisperBase",
}


def window_phrase(features: dict[str, Any]) -> str:
    """The model card's words for where a model's window lies in a clip (`features.align`, `offset`)."""
    if features.get("align", "fixed") == "speech":
        where = f"{features.get('offset')} s before the clip's first speech"
    else:
        where = f"{features.get('offset')} s into the clip"
    return f"a {features.get('duration')} s window starting {where}"


class ValueRule(NamedTuple):
    """A contract rule on one column of the per-window value summary (`ser.data.validate.window_table`)."""

    key: str  # the check's name in the contract report
    column: str  # min_db, max_db or span_db: a window's smallest and largest value and their difference
    min_value: float | None
    max_value: float | None


class FeatureKind(ABC):
    """What one `features.kind` owns. Subclass it in the kind's module and list it in `KINDS`."""

    name: str = ""

    def check(self, params: FeatureParams) -> None:  # noqa: B027 - optional hook: most kinds accept any params
        """Raise ValueError, naming the key, for `features` params this kind cannot use."""

    @abstractmethod
    def extract(self, waves: np.ndarray, params: FeatureParams) -> np.ndarray:
        """The model's input for (clips, samples) equal-length windows: float32 (clips, frames, width)."""

    @abstractmethod
    def shape(self, params: FeatureParams) -> tuple[int, int]:
        """(frames, width) of one window of `params.duration` seconds, as `extract` returns it."""

    @abstractmethod
    def value_rules(self, params: FeatureParams, db_range: tuple[float, float]) -> list[ValueRule]:
        """The feature contract's rules on each window's values (`validate.feature_db_range` is `db_range`)."""

    @abstractmethod
    def describe(self, features: dict[str, Any]) -> str:
        """The model card's description of the input, from a model's `preprocess.json` `features`."""

    def warm_up(self, params: FeatureParams) -> None:
        """Load what the first `extract` would load (compiled kernels, weights), so no request pays for it."""
        self.extract(np.zeros((1, round(params.duration * params.sample_rate)), np.float32), params)

    def frontend(self, params: FeatureParams) -> Frontend:
        """The serving front end (`ser.features.frontend`): what runs in NumPy before the exported ONNX graph.

        Raises:
            ValueError: this kind has no ONNX serving path (`ser package` then names it).
        """
        raise ValueError(f"features.kind {self.name!r} has no serving front end for the ONNX export")

    def onnx_front(self, graph: Graph, x: str, params: FeatureParams) -> str:
        """Add to the exported `graph` the ops from the front end's output `x` to this kind's features (default:
        none, the front end's output is the features)."""
        return x

    def package_files(self, folder: Path, params: FeatureParams) -> None:  # noqa: B027 - optional hook
        """Copy into a packaged model's folder what serving needs besides `model.keras` (default: nothing)."""

    def use_packaged(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Serving: take what `package_files` put in a packaged model's folder (default: nothing)."""


def kind_names() -> list[str]:
    """The registered kinds, in registration order."""
    return list(KINDS)


@cache
def feature_kind(name: str) -> FeatureKind:
    """The registered kind called `name` (its module imported on first use).

    Raises:
        ValueError: no kind of that name is registered.
    """
    if name not in KINDS:
        raise ValueError(f"unknown feature kind {name!r}; expected one of {', '.join(KINDS)}")
    module, cls = KINDS[name].split(":")
    kind: FeatureKind = getattr(importlib.import_module(module), cls)()
    if kind.name != name:
        raise ValueError(f"KINDS[{name!r}] names {KINDS[name]}, whose name is {kind.name!r}")
    return kind
