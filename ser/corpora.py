"""The params of the corpora a run reads: `data` (the sources, the class set) and `split` (speakers per split).

Part of the typed view of `params.yaml` (`ser.config.Params` holds these sections); `ser.data.sources`
resolves the sources and `ser.data.splits` splits their speakers.

    params.data.corpora            # the sources in effect
    params.data.class_set(emotions)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ser.labels import EMOTIONS, LabelError, select_classes


class Strict(BaseModel):
    """A params section: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(Strict):
    n_actors: int = Field(12, ge=1, le=99)
    seed: int = 0


class SourceParams(Strict):
    """One corpus of `data.sources` in its long form (`ser.data.sources` resolves both forms).

    The short form is a string: `synthetic`, `ravdess` / `emodb` (downloaded) or a folder, whose kind is
    detected from its layout (RAVDESS `Actor_XX/` folders, EmoDB file names, or a labels table).
    """

    kind: Literal["synthetic", "ravdess", "emodb", "labelled"] | None = None  # None: detected from the folder
    path: str | None = None  # the corpus folder; None for synthetic, and for ravdess / emodb to download them
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")  # manifest `corpus`, speaker prefix
    labels: str | None = None  # labelled: the table (TSV or CSV) inside `path`; default labels.tsv / labels.csv
    emotions: dict[str, str | None] = {}  # labelled: the corpus's own label -> ours, or null to leave it out
    language: str | None = None  # e.g. en, de; a labels table's `language` column wins per clip
    licence: str | None = None  # e.g. CC-BY-4.0; known corpora carry theirs, others are "unknown"
    citation: str | None = None
    use: Literal["all", "train", "test"] = "all"  # all: split by speaker; or a train-only / test-only corpus

    @field_validator("emotions")
    @classmethod
    def _ours(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        wrong = {k: v for k, v in value.items() if v is not None and v not in EMOTIONS}
        if wrong:
            raise ValueError(f"{wrong} map onto names outside {list(EMOTIONS)} (null leaves a label out)")
        return value


def _source_form(value: Any) -> str:
    return "mapping" if isinstance(value, dict | SourceParams) else "string"


# A `data.sources` entry: a string or a mapping; errors then name only the form given.
Source = Annotated[Annotated[str, Tag("string")] | Annotated[SourceParams, Tag("mapping")], Discriminator(_source_form)]


class DataParams(Strict):
    # The corpora: each a string (synthetic | ravdess | emodb | a folder) or a SourceParams mapping.
    sources: list[Source] = Field(default_factory=lambda: list[str | SourceParams](["synthetic"]), min_length=1)
    source: str | None = None  # one-corpus shorthand: when set, it replaces `sources`
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    classes: list[str] = []  # [] = the union of the corpora's classes

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        if not value:
            return []
        try:
            return select_classes(value)
        except LabelError as err:
            raise ValueError(str(err)) from None

    @property
    def corpora(self) -> list[str | SourceParams]:
        """The sources in effect: `source` alone when set, else `sources`."""
        return [self.source] if self.source else list(self.sources)

    def class_set(self, present: Iterable[str] | None = None) -> list[str]:
        """`classes` when set, else the emotions `present` in the corpora (all eight for None), vocabulary order."""
        if self.classes:
            return list(self.classes)
        return select_classes(None if present is None else sorted(set(present) & set(EMOTIONS)))


class SplitParams(Strict):
    method: Literal["speaker", "random"] = "speaker"
    val_speakers: int = Field(2, ge=1)  # of each corpus with enough speakers (ser.data.splits)
    test_speakers: int = Field(2, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        old = sorted(k for k in data if k in ("val_actors", "test_actors")) if isinstance(data, dict) else []
        if old:
            new = [k.replace("actors", "speakers") for k in old]
            raise ValueError(f"{', '.join(old)}: renamed {', '.join(new)} (a corpus need not have actors)")
        return data

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1 to leave clips to train on")
        return self
