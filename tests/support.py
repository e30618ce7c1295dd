"""Test and benchmark helpers for the service: a tiny packaged model, audio files, a served process.

Tests must not depend on the pipeline having run, so `package_tiny_model` builds
an untrained tiny CNN-LSTM with `ser.training.model.build_model`, writes it with a
preprocess.json and passing metrics, and packages it with `ser.serving.package.package`
into whatever store `BENTOML_HOME` names. `Served` runs `bentoml serve` on a
free 127.0.0.1 port in its own process group and kills the group on exit.

    with Served("ser.serving.service:EmotionService", env={"BENTOML_HOME": home}) as url:
        requests.post(f"{url}/predict", files={"audio": ("a.wav", wav_bytes(1.0))})
"""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.config import Params, parse_params
from ser.io import write_json

CLASSES = ["neutral", "happy", "sad"]
FEATURES = {
    "sample_rate": 16000,
    "offset": 0.0,
    "duration": 1.0,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 16,
    "fmin": 0.0,
    "fmax": 8000.0,
    "top_db": 80.0,
    "workers": 1,
}
SERVE = {
    "max_upload_mb": 2,
    "max_duration_s": 10,
    "window_hop_s": 0.5,
    "max_batch_size": 8,
    "max_latency_ms": 50,
    "window_quota": 1,
    "max_queued_windows": 40,  # two 10 s clips at hop 0.5 s: 38 windows
    "read_timeout_s": 3,
    "max_uploads": 4,
    "max_batch_files": 8,
    "max_samples_per_file": 1_000_000,
    "max_samples_per_request": 2_000_000,
}


# Headless Chromium as this machine runs it (no sandbox as root, no GPU, nothing fetched in the background).
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def tiny_params() -> Params:
    """Default params with the tiny feature settings and test-sized serve limits."""
    return parse_params({"features": FEATURES, "serve": SERVE})


def make_tiny_model(
    model_dir: Path, seed: int = 0, members: int = 1, stats_head: bool = False, enrolment: bool = False
) -> Path:
    """An untrained tiny model + preprocess.json in `model_dir` (the train stage's layout).

    `members` > 1 saves an ensemble of that many (`ser.training.model.average_models`), as `train.ensemble` does;
    `stats_head` averages in a statistics head fitted on random windows, as `model.stats_head` does;
    `enrolment` saves a speaker-enrolment head (4 clips minimum) fitted on random windows of 6 speakers.
    """
    import keras

    from ser.features.mel_bank import n_frames
    from ser.training.model import average_models, build_model

    keras.utils.set_random_seed(seed)
    # sample_rate, hop_length and n_mels are integral in FEATURES (the dict's inferred value type is float)
    n_samples = int(FEATURES["sample_rate"]) * int(FEATURES["duration"])
    shape = (n_frames(n_samples, int(FEATURES["hop_length"])), int(FEATURES["n_mels"]))
    mean, var = np.full(shape[1], -40.0, np.float32), np.full(shape[1], 100.0, np.float32)
    model = average_models(
        [
            build_model(
                shape,
                len(CLASSES),
                filters=[4],
                lstm_units=[4],
                dense_units=4,
                mean=mean,
                variance=var,
                specaugment={"rate": 0.5},
                name=f"cnn_lstm_{i}",
            )
            for i in range(members)
        ]
    )
    if stats_head:
        from ser.training.stats_head import clip_stats, fit_linear, linear_head

        rng = np.random.default_rng(seed)
        x = (mean + 10 * rng.standard_normal((48, *shape))).astype(np.float32)
        y = np.arange(48) % len(CLASSES)
        x[:, :, : len(CLASSES)] += 10 * np.eye(len(CLASSES), dtype=np.float32)[y][:, None, :]  # a head that listens
        stats = clip_stats(x)
        scaler, classifier, _ = fit_linear(stats, y, stats[:16], y[:16], grid=(1.0,))  # a C with weights of some size
        model = average_models([model, linear_head(shape, scaler, classifier, len(CLASSES))], name="cnn_lstm_stats")
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / "model.keras")
    if enrolment:
        from ser.training.enrolment import FILE, Speakers, fit_enrolment_head

        rng = np.random.default_rng(seed)
        x = (mean + 10 * rng.standard_normal((96, *shape))).astype(np.float32)
        y = np.arange(96) % len(CLASSES)
        speaker = np.array([f"synthetic:{n:02d}" for n in np.arange(96) // 16 + 1])  # as featurize writes them
        train, val = Speakers.of(x[:64], y[:64], speaker[:64]), Speakers.of(x[64:], y[64:], speaker[64:])
        fit_enrolment_head(train, val, len(CLASSES), clips=4)[0].save(model_dir / FILE)
    write_json(
        model_dir / "preprocess.json",
        {
            "classes": CLASSES,
            "features": FEATURES,
            "shape": list(shape),
            "mean": mean.tolist(),
            "variance": var.tolist(),
            "training": {"epochs_run": 0},
        },
    )
    export_tiny_model(model_dir)
    return model_dir


def export_tiny_model(model_dir: Path) -> None:
    """`ser export` of a tiny model, checked on tones of several pitches (the tests have no validation split)."""
    from ser.serving.export import export_model

    windows = np.stack([tone(float(FEATURES["duration"]), freq=f)[:, 0] for f in np.linspace(120, 400, 6)])
    export_model(model_dir, windows, [f"tone {i}" for i in range(len(windows))])


def tiny_profile(model_dir: Path, name: str = "studio", classes: list[str] | None = None):
    """A calibration profile of the tiny model in `model_dir` (with a statistics head), estimated unshrunk, scale
    too, from the log-mel windows of tones of several pitches: the tiny head, whose answer saturates on tones
    otherwise, answers on a tone under it as in its own domain. Saved as `ser calibrate` saves one."""
    from ser.config import FeatureParams
    from ser.features import extract
    from ser.serving.profiles import Profile, StatsHead, estimate, model_digest
    from ser.training.model import load_model
    from ser.training.stats_head import clip_stats

    head = StatsHead.of(load_model(model_dir / "model.keras"))
    windows = np.stack([tone(float(FEATURES["duration"]), freq=f)[:, 0] for f in np.linspace(120, 400, 24)])
    stats = clip_stats(extract(windows, FeatureParams(**FEATURES)))
    mean, scale = estimate(stats, head.mean, head.scale, shrink=0.0, scale_too=True)
    info = {"model_digest": model_digest(model_dir), "clips": len(stats)}
    profile = Profile(name, mean, scale, head, classes or [], info)
    profile.save(model_dir)
    return profile


def package_tiny_model(
    workdir: Path,
    gates_passed: bool = True,
    members: int = 1,
    enrolment: bool = False,
    stats_head: bool = False,
    profile: str | None = None,
) -> dict:
    """Tiny model (`members` > 1: an ensemble; `enrolment`: with an enrolment head; `stats_head`: with a statistics
    head, and `profile`: a calibration profile of that name), metrics and package into the current BENTOML_HOME;
    returns package's summary."""
    from ser.serving.package import package

    model_dir = make_tiny_model(workdir / "models", members=members, enrolment=enrolment, stats_head=stats_head)
    if profile:
        tiny_profile(model_dir, profile)
    write_json(workdir / "metrics.json", {"accuracy": 0.5, "uar": 0.5, "macro_f1": 0.5, "gates_passed": gates_passed})
    return package(
        tiny_params(),
        model_dir,
        workdir / "metrics.json",
        workdir / "package.json",
        lock_path=workdir / "dvc.lock",
        gate_path=workdir / "gate.json",
        card_path=workdir / "model_card.md",
    )


def tone(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """A float32 (frames, channels) tone with a little noise."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def audio_bytes(samples: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode samples as a file in memory (WAV, FLAC, OGG, MP3 ...)."""
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_bytes(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    return audio_bytes(tone(seconds, rate, channels), rate)


def silent_flac(seconds: float, rate: int = 16000) -> bytes:
    """A FLAC of `seconds` of silence, written in chunks: an hour is ~180 KB."""
    buf, chunk = io.BytesIO(), np.zeros(rate * 60, np.float32)
    with sf.SoundFile(buf, "w", rate, 1, format="FLAC") as f:
        for _ in range(int(seconds // 60)):
            f.write(chunk)
        f.write(np.zeros(int(seconds % 60 * rate), np.float32))
    return buf.getvalue()


def _nan_wav() -> bytes:
    """A float WAV holding one NaN sample."""
    wave = tone(1.0)
    wave[100] = np.nan
    return audio_bytes(wave, 16000, "WAV", "FLOAT")


def bad_uploads() -> dict[str, tuple]:
    """Every bad input of the service's contract: name -> (make bytes, HTTP status, words of the message).

    Sized for the `SERVE` limits above (2 MiB upload cap, 10 s duration cap).
    """
    return {
        "empty body": (lambda: b"", 400, "empty upload"),
        "non-audio bytes": (lambda: b"this is not audio at all" * 50, 400, "not a readable audio file"),
        "truncated wav": (lambda: wav_bytes(1.0)[:20000], 400, "truncated"),
        "truncated flac": (lambda: audio_bytes(tone(1.0), 16000, "FLAC")[:3000], 400, "truncated"),
        "zero-length audio": (lambda: audio_bytes(np.zeros((0, 1), np.float32), 16000), 400, "no samples"),
        "NaN samples": (_nan_wav, 400, "NaN or infinite"),
        "very low sample rate": (lambda: wav_bytes(1.0, rate=1000), 400, "sample rate 1000 Hz"),
        "very high sample rate": (lambda: audio_bytes(tone(0.1, 16000), 400000), 400, "sample rate 400000 Hz"),
        "too many channels": (lambda: wav_bytes(0.2, channels=12), 400, "12 channels"),
        "over the upload cap": (lambda: wav_bytes(70.0, rate=16000)[: int(2.5 * 2**20)], 413, "MiB upload cap"),
        "over the duration cap": (lambda: wav_bytes(11.0), 413, "the limit is 10 s"),
        "hour of silence, tiny flac": (lambda: silent_flac(3600), 413, "lasts 3600.0 s"),
    }


def flac_of_unknown_length(seconds: float, rate: int = 16000) -> bytes:
    """A FLAC whose STREAMINFO total_samples is 0, as streaming encoders write (legal FLAC)."""
    data = bytearray(audio_bytes(tone(seconds, rate), rate, "FLAC"))
    word = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)  # the low 36 bits: total samples
    data[18:26] = word.to_bytes(8, "big")
    return bytes(data)


def streamed_wav(seconds: float) -> bytes:
    """A WAV whose RIFF and data sizes say 0xFFFFFFFF, as a streaming recorder leaves them."""
    data = bytearray(wav_bytes(seconds))
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(data)


def float_wav(wave: np.ndarray, rate: int = 16000) -> bytes:
    return audio_bytes(wave.astype(np.float32), rate, "WAV", "FLOAT")


PEAK = np.float32(3e17) * tone(1.0)  # finite float samples far above full scale


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`bentoml serve <target>` on 127.0.0.1 for the duration of a `with` block; yields the base URL.

    Args:
        target: a service import path or a Bento tag.
        env: extra environment (BENTOML_HOME, SER_*).
        cwd: working directory of the server.
        timeout: seconds to wait for /readyz.
    """

    def __init__(self, target: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 240) -> None:
        self.target, self.cwd, self.timeout = target, cwd, timeout
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            **(env or {}),
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def full_log(self) -> str:
        """Everything the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    @property
    def log(self) -> str:
        """The tail of what the server printed (for error messages)."""
        return self.full_log[-4000:]

    def __enter__(self) -> str:
        import requests

        cmd = ["bentoml", "serve", self.target, "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited {self.proc.returncode}:\n{self.log}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self.url
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"{' '.join(cmd)} not ready after {self.timeout:.0f} s:\n{self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def riff_wav(seconds: float = 0.5, rate: int = 16000, data_chunks: int = 1, header_rate: int | None = None) -> bytes:
    """A 16-bit mono WAV built by hand: `data_chunks` copies of the tone's data chunk, the fmt chunk stating
    `header_rate` (default `rate`), e.g. 0."""
    pcm = (tone(seconds, rate)[:, 0] * 32767).astype("<i2").tobytes()
    stated = rate if header_rate is None else header_rate
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, stated, stated * 2, 2, 16)
    body = b"WAVE" + fmt + (struct.pack("<4sI", b"data", len(pcm)) + pcm) * data_chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body


def id3_tag(size: int = 100) -> bytes:
    """An ID3v2.4 tag of `size` bytes of padding (its size is syncsafe: 7 bits a byte)."""
    return b"ID3\x04\x00\x00" + bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0)) + b"\0" * size
