"""Typed view of `params.yaml`, checked before any stage touches data.

Every stage loads its section through `load_params`; a bad value fails fast with
an error naming the file and the key (`split.test_speakers`) and what was expected.
The corpora's sections (`data`, `split`) are defined in `ser.corpora`.

    params = load_params("params.yaml")
    params.features.n_mels
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ser.corpora import DataParams as DataParams
from ser.corpora import SourceParams as SourceParams
from ser.corpora import SplitParams as SplitParams
from ser.corpora import Strict as _Strict
from ser.corpora import SyntheticParams as SyntheticParams
from ser.features.kinds import feature_kind


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or holds a value outside its allowed range."""


class FeatureParams(_Strict):
    sample_rate: int = Field(16000, ge=4000, le=96000)
    offset: float = Field(0.5, ge=0)  # seconds skipped (align fixed), or kept before the speech onset (speech)
    # where each clip's window starts (ser.audio.window_start); fixed here: a model packaged before the key existed
    align: Literal["fixed", "speech"] = "fixed"
    duration: float = Field(3.5, gt=0, le=30)
    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(256, ge=16)
    n_mels: int = Field(64, ge=8, le=256)
    fmin: float = Field(0.0, ge=0)
    fmax: float | None = None
    top_db: float = Field(80.0, gt=0)
    workers: int = Field(2, ge=1)
    kind: str = "logmel"  # a registered kind (ser/features/kinds.py): logmel | whisper_base (n_fft..top_db unused)
    whisper_layers: list[int] = Field(default_factory=lambda: [3, 4], min_length=1)  # whisper_base: 0-6, run R's probe
    # whisper_base: encode the window zero-padded to this many s (0: as is)
    whisper_context: float = Field(0.0, ge=0, le=30)
    level_db: float | None = Field(None, ge=-60, le=0)  # every window scaled to this gated level first (ser.audio)
    frame_norm: bool = False  # each frame of the features centred and scaled over its channels (ser.features)

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        feature_kind(value)  # ValueError for a name not in the registry, listing the registered kinds
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureParams:
        feature_kind(self.kind).check(self)  # the kind's own rules (ValueError names the key)
        if self.fmax is not None and not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need fmin < fmax <= sample_rate/2 = {self.sample_rate / 2:g}")
        if self.hop_length > self.n_fft:
            raise ValueError("hop_length must not exceed n_fft")
        return self


class NoiseParams(_Strict):
    rate: float = Field(0.5, ge=0, le=1)
    snr_db: tuple[float, float] = (15.0, 30.0)


class PitchParams(_Strict):
    rate: float = Field(0.3, ge=0, le=1)
    semitones: float = Field(2.0, ge=0, le=12)


class SpeedParams(_Strict):
    rate: float = Field(0.5, ge=0, le=1)
    min: float = Field(0.9, gt=0.5, le=1)
    max: float = Field(1.1, ge=1, lt=2)


class RateParams(_Strict):
    rate: float = Field(0.0, ge=0, le=1)  # share of the augmented copies it is applied to; 0 = off


class CropParams(RateParams):
    min_duration: float = Field(1.0, gt=0)  # shortest cut (ser.data.augment.sub_window), seconds; longest: all


class RoomParams(RateParams):  # ser.data.augment.reverberate, the RT60 drawn from this range (seconds)
    rt60: tuple[Annotated[float, Field(gt=0, le=3)], Annotated[float, Field(gt=0, le=3)]] = (0.2, 0.8)


class SpecAugmentParams(_Strict):
    rate: float = Field(0.5, ge=0, le=1)
    freq_masks: int = Field(2, ge=0)
    freq_width: int = Field(8, ge=0)
    time_masks: int = Field(2, ge=0)
    time_width: int = Field(20, ge=0)


class AugmentParams(_Strict):
    copies: int = Field(1, ge=0, le=10)
    seed: int = 7
    noise: NoiseParams = Field(default_factory=NoiseParams)
    pitch: PitchParams = Field(default_factory=PitchParams)
    speed: SpeedParams = Field(default_factory=SpeedParams)
    crop: CropParams = Field(default_factory=CropParams)
    room: RoomParams = Field(default_factory=RoomParams)
    telephone: RateParams = Field(default_factory=RateParams)  # ser.data.augment.telephone_band
    specaugment: SpecAugmentParams = Field(default_factory=SpecAugmentParams)


class ModelParams(_Strict):
    filters: list[int] = Field([64, 128, 128], min_length=1)
    kernel_size: int = Field(5, ge=1)
    pool_size: int = Field(2, ge=1)
    lstm_units: list[int] = Field([128, 64], min_length=1)
    dense_units: int = Field(64, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    pooling: Literal["last", "mean", "attention"] = "last"
    bidirectional: bool = False
    utterance_norm: bool = False  # subtract each clip's own per-mel mean (in the model, so serving matches)
    frontend: Literal["conv1d", "conv2d"] = "conv1d"  # convolve over time (mels as channels) | time x mel
    stats_head: bool = False  # average in a linear head on per-channel mean and std (ser.training.stats_head)
    layer_weighting: bool = False  # whisper_base: mix features.whisper_layers per frame by learned softmax weights

    @field_validator("filters", "lstm_units")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("every size must be a positive integer")
        return value


_PLATEAU_KEEPS = "plateau keeps its best epoch's weights (set train.average_last=0 with schedule: plateau)"
_PLATEAU_STOPS = "plateau stops early on the validation loss, which refit cannot (set train.refit=false)"


class TrainParams(_Strict):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(8, ge=1)
    seed: int = 42
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled weight decay; 0 = plain Adam
    mixup: float = Field(0.0, ge=0)  # Beta(a, a) mixup of training batches; 0 = off
    ensemble: int = Field(1, ge=1)  # models trained with seeds seed, seed+1, ...; the saved model averages them
    schedule: Literal["plateau", "cosine"] = "plateau"  # plateau: halve, stop early, best epoch; cosine: decay to 0
    average_last: int = Field(0, ge=0)  # cosine only: mean of the last min(n, epochs) epochs' weights (SWA); 0 = off
    refit: bool = False  # cosine only: final fit on training + validation once validation chose the head's C
    # none | weights (loss weights) | sampler (balanced batches): every corpus and, within it, every class the same
    balance: Literal["none", "weights", "sampler"] = "none"

    @model_validator(mode="after")
    def _averaging_needs_cosine(self) -> TrainParams:
        if self.average_last and self.schedule != "cosine":
            raise ValueError(f"average_last ({self.average_last}) needs schedule: cosine; {_PLATEAU_KEEPS}")
        if self.refit and self.schedule != "cosine":
            raise ValueError(f"train.refit needs schedule: cosine; {_PLATEAU_STOPS}")
        return self


class GateParams(_Strict):
    min_accuracy: float = Field(0.0, ge=0, le=1)
    min_uar: float = Field(0.0, ge=0, le=1)
    min_macro_f1: float = Field(0.0, ge=0, le=1)
    min_class_recall: float = Field(0.0, ge=0, le=1)  # floor for the worst class's recall


class EvaluateParams(_Strict):
    gates: GateParams = Field(default_factory=GateParams)  # on the pooled test split
    corpus_gates: dict[str, GateParams] = {}  # a corpus's own floors, e.g. {emodb: {min_uar: 0.5}}
    champion_tolerance: float = Field(0.02, ge=0, le=1)  # candidate may trail the champion by this much UAR


class EnrolmentParams(_Strict):
    """Speaker enrolment (ser.training.enrolment): several clips of one speaker, normalised by their own mean."""

    head: bool = False  # the train stage also fits the enrolment head (saved as enrolment.npz)
    clips: int = Field(4, ge=2)  # reference clips: of each validation speaker in training and test speaker in
    # evaluate; the fewest /predict_speaker accepts
    draws: int = Field(5, ge=1)  # evaluate: random reference draws per test speaker, scores averaged


class CalibrateParams(_Strict):
    """Domain calibration (ser.serving.profiles): the statistics head re-standardised on a deployment's clips."""

    shrink: float = Field(10.0, ge=0)  # N clips move the mean N / (N + shrink) of the way from the training's
    scale: bool = False  # also re-estimate the scale (shrunk by N / (N + 3 shrink))
    head_share: float | None = Field(1.0, ge=0, le=1)  # the calibrated head's share of the answer; None: its own
    min_clips: int = Field(10, ge=2)  # fewest decodable, non-silent clips a profile is estimated from
    min_speakers: int = Field(2, ge=1)  # fewest speakers, where the folder's layout names them
    max_clips: int = Field(500, ge=2)  # clips drawn at random (seeded) from a larger folder
    one_sided_share: float = Field(0.5, gt=0, le=1)  # a class holding more of the calibrated answers: reported


class ValidateParams(_Strict):
    """The data contract's bounds (see ser.data.contract)."""

    mode: Literal["fail", "quarantine"] = "fail"
    min_duration: float = Field(1.0, gt=0)
    max_duration: float = Field(10.0, gt=0)
    sample_rates: list[int] = [16000, 22050, 24000, 44100, 48000]
    channels: int = Field(1, ge=1)
    actors: tuple[int, int] = (1, 24)  # RAVDESS actor ids
    min_rms_dbfs: float = -70.0  # whole-clip RMS; the quietest real RAVDESS clip is -64 dBFS
    max_clip_ratio: float = Field(0.001, ge=0, le=1)
    class_balance: tuple[float, float] = (0.4, 2.5)  # each class's clip count / mean count
    feature_db_range: tuple[float, float] = (-200.0, 100.0)  # plausible log-mel values (dB)
    min_feature_variance: float = Field(1e-6, gt=0)  # per mel bin, in stats.json


class FlowParams(_Strict):
    """How the Prefect flow runs (see flows/retrain.py)."""

    task_runner: Literal["threads", "processes", "dask"] = "threads"
    dask_address: str | None = None  # an existing Dask scheduler; None starts a local cluster
    workers: int = Field(2, ge=1)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(2.0, ge=0)


class ServeParams(_Strict):
    """Limits and batching of the BentoML service."""

    max_upload_mb: float = Field(20.0, gt=0)
    max_duration_s: float = Field(60.0, gt=0)
    window_hop_s: float = Field(1.75, gt=0)
    max_batch_size: int = Field(32, ge=1)
    max_latency_ms: int = Field(20, ge=1)  # a model call waits this long for new requests beside long ones' windows
    window_quota: int = Field(1, ge=1)  # windows of one request in a model call while other requests wait
    max_queued_windows: int = Field(256, ge=1)  # admitted work not yet scored, in windows; past it: 503 overloaded
    read_timeout_s: float = Field(10.0, gt=0)  # a request's head, and each read of its body, within this or 408
    max_uploads: int = Field(256, ge=1)  # upload bodies being read at once; past it the idlest is dropped, or 503
    max_batch_files: int = Field(64, ge=1)  # files one /predict_batch request may hold
    max_samples_per_file: int = Field(5_760_000, ge=1)  # decoding cost, s x rate x channels: 60 s of 48 kHz stereo
    max_samples_per_request: int = Field(23_040_000, ge=1)
    classes: list[str] = []  # the classes answered when a request names none (a deployment's subset); [] = all
    precision: Literal["fp32", "int8"] = "fp32"  # the exported graph served: fp32 or its int8-quantised matrix products


class Params(_Strict):
    """The whole of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    data: DataParams = Field(default_factory=DataParams)
    split: SplitParams = Field(default_factory=SplitParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    augment: AugmentParams = Field(default_factory=AugmentParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    enrolment: EnrolmentParams = Field(default_factory=EnrolmentParams)
    calibrate: CalibrateParams = Field(default_factory=CalibrateParams)
    # `validate` would shadow pydantic's BaseModel.validate; read it as `params.contract`.
    contract: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    flow: FlowParams = Field(default_factory=FlowParams)
    serve: ServeParams = Field(default_factory=ServeParams)

    @model_validator(mode="after")
    def _weighting_needs_layers(self) -> Params:
        if self.model.layer_weighting and self.features.kind != "whisper_base":
            raise ValueError("model.layer_weighting mixes encoder layers: it needs features.kind whisper_base")
        return self


def parse_params(raw: dict[str, Any] | None, origin: str = "params.yaml") -> Params:
    """Validate a params mapping; errors name `origin` and the dotted key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        keys = [".".join(str(p) for p in e["loc"]) or "(top level)" for e in err.errors()]
        lines = [f"{origin}: {k}: {e['msg']} (got {e.get('input')!r})" for k, e in zip(keys, err.errors(), strict=True)]
        raise ParamsError("\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; ParamsError if it is missing, not YAML or holds an invalid value."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
