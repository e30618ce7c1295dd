"""Speaker enrolment (`ser.training.enrolment`): normalisation, the head, its fusion, reference draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ser.training.enrolment import reference_mask, speaker_normalise

# Speaker ids are namespaced by corpus: "emodb:01" is not "ravdess:01".
SPEAKERS = ["ravdess:01", "ravdess:02", "emodb:01"]


def clips(per_speaker: int = 16) -> pd.DataFrame:
    emotions = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    return pd.DataFrame(
        {
            "speaker": np.repeat(SPEAKERS, per_speaker),
            "emotion": [emotions[i % 8] for i in range(len(SPEAKERS) * per_speaker)],
        }
    )


def test_every_speaker_is_centred_and_scaled_on_its_own_clips():
    index = clips()
    speaker = index["speaker"].to_numpy()
    level = (pd.factorize(speaker)[0] + 1)[:, None]  # 1, 2, 3
    rng = np.random.default_rng(0)
    # each speaker has its own offset and spread, as voices do
    x = rng.normal(size=(len(index), 5)) * level + 10 * level
    centred = speaker_normalise(x, speaker, reference_mask(index, "all"), scale=False)
    scaled = speaker_normalise(x, speaker, reference_mask(index, "all"), scale=True)
    for a in SPEAKERS:
        rows = speaker == a
        np.testing.assert_allclose(centred[rows].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(centred[rows].std(0), x[rows].std(0), rtol=1e-4)  # a shift only
        np.testing.assert_allclose(scaled[rows].std(0), 1, atol=1e-3)
    assert centred.dtype == np.float32 and x.dtype == np.float64  # the input is not modified in place


def test_calm_reference_uses_only_neutral_and_calm_clips():
    index = clips()
    speaker = index["speaker"].to_numpy()
    mask = reference_mask(index, "calm")
    assert set(index.loc[mask, "emotion"]) == {"neutral", "calm"} and mask.sum() == 3 * 4
    x = np.arange(len(index), dtype=float)[:, None] + np.where(mask, 0.0, 100.0)[:, None]
    out = speaker_normalise(x, speaker, mask, scale=False)
    for a in SPEAKERS:
        assert abs(out[(speaker == a) & mask].mean()) < 1e-4  # the reference is centred, the rest is not
        assert out[(speaker == a) & ~mask].mean() > 50


def test_numeric_reference_draws_that_many_clips_per_speaker_reproducibly():
    index = clips()
    first, again, other = (reference_mask(index, "5", seed=s) for s in (0, 0, 1))
    assert all(first[index["speaker"] == a].sum() == 5 for a in SPEAKERS)
    assert (first == again).all() and (first != other).any()
    assert reference_mask(index, "99").all()  # more than a speaker has: all of its clips


@pytest.mark.parametrize("reference", ["", "0", "-3", "most", "2.5"])
def test_a_bad_reference_is_refused_with_what_was_expected(reference):
    with pytest.raises(ValueError, match="expected all, calm or a positive number of clips"):
        reference_mask(clips(), reference)


def test_a_speaker_without_calm_clips_is_named():
    index = clips()
    index.loc[(index["speaker"] == "ravdess:02") & index["emotion"].isin(["neutral", "calm"]), "emotion"] = "sad"
    with pytest.raises(ValueError, match=r"speakers \['ravdess:02'\] have no reference clip"):
        reference_mask(index, "calm")


def voices(n_speakers: int = 6, per_speaker: int = 32, dims: int = 6, seed: int = 0):
    """(clips, frames, channels) windows whose emotion is a small shift on a large per-speaker offset, their labels
    and their speakers ("synthetic:01" ...)."""
    rng = np.random.default_rng(seed)
    number = np.repeat(np.arange(1, n_speakers + 1), per_speaker)
    y = np.tile(np.arange(4), n_speakers * per_speaker // 4)
    voice = 6.0 * rng.standard_normal((n_speakers + 1, dims))[number]
    emotion = 1.0 * np.eye(4, dims)[y]
    frames = voice + emotion + 0.3 * rng.standard_normal((len(y), dims))
    x = frames[:, None, :] + 0.1 * rng.standard_normal((len(y), 5, dims))
    return x.astype(np.float32), y, np.array([f"synthetic:{n:02d}" for n in number])


def test_the_head_learns_emotion_as_a_shift_from_the_speakers_mean():
    """Voices differ more than emotions do: the plain statistics head is near chance on new speakers, the
    enrolment head (each speaker measured against its own mean) is not."""
    from ser.training.enrolment import Speakers, enrolment_probs, fit_enrolment_head
    from ser.training.stats_head import clip_stats, fit_linear

    x, y, speaker = voices()
    part = {
        "train": np.isin(speaker, ["synthetic:01", "synthetic:02", "synthetic:03", "synthetic:04"]),
        "val": speaker == "synthetic:05",
        "test": speaker == "synthetic:06",
    }
    sets = {k: Speakers.of(x[m], y[m], speaker[m]) for k, m in part.items()}
    head, report = fit_enrolment_head(sets["train"], sets["val"], n_classes=5, clips=4)
    assert report["reference_clips"] == 4 and report["val_uar"] > 0.9
    assert head.kernel.shape == (12, 5) and head.bias[4] < -20  # class 4 never seen: (near) zero probability
    enrolled = enrolment_probs(head, np.full((32, 5), 0.2), sets["test"], clips=8, draws=3)
    assert len(enrolled) == 3 and all(np.allclose(p.sum(1), 1, atol=1e-5) for p in enrolled)
    enrolled_acc = np.mean([(p.argmax(1) == sets["test"].y).mean() for p in enrolled])
    scaler, plain, _ = fit_linear(
        clip_stats(x[part["train"]]), y[part["train"]], clip_stats(x[part["val"]]), y[part["val"]]
    )
    plain_acc = (plain.predict(scaler.transform(clip_stats(x[part["test"]]))) == y[part["test"]]).mean()
    assert enrolled_acc > 0.9 and enrolled_acc > plain_acc + 0.3


def test_fuse_is_the_mean_of_the_model_and_the_head_and_the_head_survives_a_round_trip(tmp_path):
    from ser.training.enrolment import EnrolmentHead, Speakers, fit_enrolment_head, speaker_probs

    x, y, speaker = voices()
    head, _ = fit_enrolment_head(
        Speakers.of(x[:128], y[:128], speaker[:128]), Speakers.of(x[128:], y[128:], speaker[128:]), 4, 4
    )
    head.save(tmp_path / "enrolment.npz")
    again = EnrolmentHead.load(tmp_path / "enrolment.npz")
    assert again.min_clips == 4
    stats = Speakers.of(x[:10], y[:10], speaker[:10]).stats
    model = np.random.default_rng(1).dirichlet(np.ones(4), 10).astype(np.float32)
    mean = stats.mean(0)
    np.testing.assert_allclose(again.fuse(model, stats, mean), (model + head.probs(stats, mean)) / 2, atol=1e-6)
    # speaker_probs: the mean of the clips' mean window statistics, so a clip of 3 windows counts once
    parts = [3, 1, 6]
    out = speaker_probs(head, model, stats, parts)
    clip_means = [stats[0:3].mean(0), stats[3:4].mean(0), stats[4:10].mean(0)]
    expected = head.fuse(model, stats, np.mean(clip_means, axis=0))
    assert [len(p) for p in out] == parts
    np.testing.assert_allclose(np.concatenate(out), expected, atol=1e-6)


def test_evaluation_references_are_drawn_from_original_clips_reproducibly():
    from ser.training.enrolment import random_reference

    speaker = np.repeat(["ravdess:01", "emodb:01"], 10)  # the same number in two corpora: two speakers
    original = np.tile([True, False], 10)
    first = random_reference(speaker, 3, np.random.default_rng(0), eligible=original)
    again = random_reference(speaker, 3, np.random.default_rng(0), eligible=original)
    assert (first == again).all() and not (first & ~original).any()
    assert [first[speaker == a].sum() for a in ("ravdess:01", "emodb:01")] == [3, 3]
    assert random_reference(speaker, 99, np.random.default_rng(0), eligible=original).sum() == 10


def test_split_speakers_names_features_without_speakers(tmp_path):
    from ser.training.enrolment import split_speakers

    np.savez(tmp_path / "train.npz", x=np.zeros((2, 3, 4)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"train.npz: no `speaker` array; run the featurize stage again"):
        split_speakers(tmp_path, "train", np.zeros((2, 3, 4)), np.zeros(2))
