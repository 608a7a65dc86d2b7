"""tts_zoo.pitch (DSP F0 tracking) and tts_zoo.data.f0_labels (the per-file F0 cache beside a
manifest): accuracy on a known contour, frame alignment with log_mel, failures → missing, computed
once, labels on the dataset's padded wave, padded into Batch.f0."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from tts_zoo.audio import load_audio, log_mel
from tts_zoo.data.collate import Collater
from tts_zoo.data.dataset import SpeechDataset
from tts_zoo.data.f0_labels import F0Labels
from tts_zoo.data.manifest import Utterance, write_manifest
from tts_zoo.errors import RecipeError
from tts_zoo.pitch import PitchTrackingError, estimate_f0, frame_count
from tts_zoo.recipe import load_recipe
from tests.core.test_data_prepare import FakeFrontend

pytest.importorskip("pyworld")
SR = 24000


def harmonic(seconds: float, f_start: float, f_end: float, noise_db: float = 30.0, seed: int = 0):
    """Harmonic tone (harmonic k at 1/k) gliding f_start → f_end, white noise noise_db below it:
    (wave, f0 per sample)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = f_start + (f_end - f_start) * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    wave = 0.3 * wave / np.abs(wave).max()
    wave += rng.standard_normal(len(t)) * np.sqrt(np.mean(wave**2) / 10 ** (noise_db / 10))
    return wave.astype(np.float32), f0


@pytest.mark.parametrize("method,max_cents", [("harvest", 10.0), ("dio", 15.0)])
def test_tracker_follows_a_known_contour(method, max_cents):
    wave, f0 = harmonic(1.5, 110.0, 220.0)
    est = estimate_f0(wave, SR, method=method)
    truth = f0[np.minimum(np.arange(len(est)) * 300, len(f0) - 1)]
    inner = slice(4, -4)  # the ends see zero padding
    assert est.dtype == np.float32
    assert (est[inner] > 0).mean() > 0.95  # voiced throughout
    cents = np.abs(1200 * np.log2(est[inner].clip(1) / truth[inner]))
    assert np.median(cents) < max_cents, np.median(cents)
    assert (cents > 1200 * np.log2(1.2)).mean() < 0.03  # gross errors (> 20 %) rare


@pytest.mark.parametrize("n", [24000, 24299, 24300, 37777, 10000 + 2 * 5000])
def test_frame_count_equals_log_mel(n):
    wave, _ = harmonic(n / SR, 150.0, 150.0)
    wave = wave[:n]
    frames = log_mel(torch.from_numpy(wave)).shape[-1]
    assert frame_count(n) == frames
    for method in ("harvest", "dio"):
        assert estimate_f0(wave, SR, method=method).shape == (frames,)


def test_silence_is_unvoiced_and_bad_input_raises():
    assert not estimate_f0(np.zeros(SR, np.float32), SR).any()
    with pytest.raises(PitchTrackingError, match="non-finite"):
        estimate_f0(np.full(SR, np.nan, np.float32), SR)
    with pytest.raises(PitchTrackingError, match="too short"):
        estimate_f0(np.zeros(100, np.float32), SR)
    with pytest.raises(ValueError, match="unknown method"):
        estimate_f0(np.zeros(SR, np.float32), SR, method="yin")


# ------------------------------------------------------------------------------------ the cache


class CountingTracker(torch.nn.Module):
    """A wave pitch extractor (the interface's wave form) that counts its calls; ``fail_on`` raises."""

    input_kind = "wave"

    def __init__(self, fail_above: float = 1e9):
        super().__init__()
        self.calls = 0
        self.fail_above = fail_above

    def forward(self, wave):
        self.calls += 1
        if float(wave.abs().max()) > self.fail_above:
            raise PitchTrackingError("too loud for this test tracker")
        return torch.from_numpy(estimate_f0(wave[0], SR, method="dio"))[None], None, None

    def describe(self):
        return {"tracker": "dio-test"}


@pytest.fixture
def corpus(tmp_path):
    """Four gliding tones (one too loud for the failing tracker), a corrupt file and a missing one."""
    recs = []
    for i, (lo, hi, gain) in enumerate([(100, 140, 1.0), (180, 150, 1.0), (120, 240, 1.0), (150, 160, 3.0)]):
        wave, _ = harmonic(0.8 + 0.2 * i, lo, hi, seed=i)
        soundfile.write(tmp_path / f"u{i}.wav", np.clip(wave * gain, -1, 1), SR, subtype="FLOAT")
        recs.append(Utterance(f"u{i}", str(tmp_path / f"u{i}.wav"), "t", "a b c", "ab"[i % 2], 0.8 + 0.2 * i, SR))
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + os.urandom(200))
    recs.append(Utterance("bad", str(tmp_path / "bad.wav"), "t", "a b", "a", 1.0, SR))
    recs.append(Utterance("gone", str(tmp_path / "gone.wav"), "t", "a b", "b", 1.0, SR))
    write_manifest(tmp_path / "train.jsonl", recs)
    return tmp_path, recs


def test_labels_computed_once_and_failures_marked_missing(corpus, caplog):
    root, recs = corpus
    tracker = CountingTracker(fail_above=0.5)
    labels = F0Labels(root / "f0", tracker)
    audios = [r.audio for r in recs]
    report = labels.ensure(audios, workers=1, progress=False)
    assert (report.total, report.computed, report.cached) == (6, 3, 0)
    assert set(report.missing) == {recs[3].audio, recs[4].audio, recs[5].audio}  # too loud, corrupt, gone
    assert "too loud" in report.missing[recs[3].audio] and "cannot read" in report.missing[recs[4].audio]
    assert sum("3 of 6 files missing" in r.getMessage() for r in caplog.records) == 1  # one warning
    assert tracker.calls == 4  # the corrupt file fails while loading, the missing one before

    again = labels.ensure(audios, workers=1, progress=False)  # a no-op: nothing tracked again
    assert tracker.calls == 4 and (again.computed, again.cached, len(again.missing)) == (0, 3, 3)
    assert labels.status(recs[0].audio) == "ok" and labels.status(recs[3].audio) == "missing"
    assert labels.load(recs[3].audio) is None
    assert not list(labels.dir.glob(".*tmp"))  # nothing half-written

    os.utime(recs[0].audio, ns=(1, 1))  # a changed file is labelled again
    assert labels.ensure(audios, workers=1, progress=False).computed == 1 and tracker.calls == 5


def test_labels_are_of_the_datasets_padded_wave_and_reach_the_batch(corpus):
    root, recs = corpus
    torch.set_num_threads(1)
    labels = F0Labels(root / "f0", CountingTracker(fail_above=0.5))
    report = labels.ensure([r.audio for r in recs[:4]], workers=2, progress=False)  # forked workers
    assert report.computed == 3 and len(report.missing) == 1
    ds = SpeechDataset(recs[:4], FakeFrontend(), f0_labels=labels, min_ood_length=1)
    samples = [ds[i] for i in range(4)]
    for r, s in zip(recs[:3], samples):
        padded = F.pad(load_audio(r.audio, SR), (5000, 5000))
        expected = estimate_f0(padded.numpy(), SR, method="dio")
        assert len(expected) == log_mel(padded).shape[-1]  # a label per frame of the padded wave's mel
        assert s.f0.shape == (s.mel.shape[-1],)  # cut to the even mel like the mel
        assert torch.equal(s.f0, torch.from_numpy(expected[: s.mel.shape[-1]]))
        assert (s.f0[:10] == 0).all() and (s.f0[s.f0 > 0].median() > 90)  # silence padding unvoiced
    assert torch.isnan(samples[3].f0).all() and ds.f0_missing == {recs[3].audio}
    batch = Collater()(samples)
    assert batch.f0.shape == (4, batch.mels.shape[-1])
    for b, path in enumerate(batch.paths):
        n = int(batch.output_lengths[b])
        if path == recs[3].audio:
            assert torch.isnan(batch.f0[b, :n]).all()
        else:
            assert torch.equal(batch.f0[b, :n], samples[[r.audio for r in recs].index(path)].f0)
            assert (batch.f0[b, n:] == 0).all()
    assert Collater()([SpeechDataset(recs[:2], FakeFrontend(), min_ood_length=1)[0]]).f0 is None  # off: no field


def test_recipe_validates_the_tracker_block():
    demo = Path(__file__).resolve().parents[2] / "recipes/demo.yaml"
    recipe = load_recipe(demo, ["data.f0_labels={component: dsp_pitch, method: dio}"])
    assert recipe.data.f0_labels == {"component": "dsp_pitch", "method": "dio"}
    assert load_recipe(demo, ["data.f0_labels=null"]).data.f0_labels is None
    with pytest.raises(RecipeError) as e:
        load_recipe(demo, ["data.f0_labels={component: dsp_pitch, method: yin}"])
    assert "data.f0_labels.method" in str(e.value)
