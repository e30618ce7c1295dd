"""What the service answers: the response models of `/predict`, `/predict_batch` and `/predict_speaker`."""

from __future__ import annotations

from pydantic import BaseModel


class Window(BaseModel):
    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """What `/predict` answers for one clip."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    duration_s: float
    source_sample_rate: int
    windows: list[Window]
    notes: list[str] = []


class SpeakerPrediction(BaseModel):
    """What `/predict_speaker` answers: every clip in enrolment mode, and their mean (the speaker's overall)."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    reference_clips: int
    clips: list[Prediction]
