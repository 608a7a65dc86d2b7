"""tts_zoo.audio: parity with the reference's torchaudio front end (fixtures README sections 4, 9.1)
and behaviour (resampling a tone, file errors, silence trimming, batching, devices)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from tts_zoo import audio
from tts_zoo.audio import AudioError
from tests.styletts2.reference import FIXTURE_SETS, FIXTURES, FixtureSet, assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(
    params=FIXTURE_SETS or [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {FIXTURES}"))]
)
def fx(request) -> dict:
    torch.set_num_threads(1)  # the fixtures were produced single-threaded
    return FixtureSet(request.param).fx


# ----------------------------------------------------------------------------- fixture parity


def test_log_mel_matches_reference_preprocess(fx):
    mel = audio.log_mel(fx["ref_wave"][None])  # the reference's preprocess() adds the batch dim
    assert mel.shape == fx["ref_mel"].shape
    assert mel.shape[-1] == 1 + fx["ref_wave"].shape[-1] // 300
    # The README allows 1e-4; this build differs from the stored numbers only by FFT rounding (~2e-6).
    assert_close(mel, fx["ref_mel"], 1e-5, "ref_mel")


def test_mel_filterbank_and_window_are_torchaudios(fx):
    sparse = fx["audio"]["mel_filterbank_nonzero"]
    expected = torch.zeros(sparse["shape"])
    expected[sparse["index"][:, 0], sparse["index"][:, 1]] = sparse["value"]
    fb = audio.mel_filterbank(expected.shape[0], expected.shape[1], sample_rate=16000)
    assert torch.equal(fb, expected), "the float32 build must reproduce torchaudio's filterbank exactly"
    assert torch.equal(torch.hann_window(1200), fx["audio"]["mel_window"])


def test_resample_24k_to_16k_matches_functional_and_transform(fx):
    a = fx["audio"]
    out = audio.resample(a["resample_in"], 24000, 16000)
    assert_close(out, a["resample_functional"], 1e-6, "resample_functional")
    assert_close(out, a["resample_transform"], 1e-6, "resample_transform")
    kernel, width = audio.resample_kernel(24000, 16000)
    assert_close(kernel, a["resample_transform_kernel"], 1e-6, "resample_transform_kernel")
    assert kernel.shape[-1] == 2 * width + 3  # 24000:16000 reduces to 3:2


def test_dct_matrix_matches_create_dct(fx):
    expected = fx["audio"]["dct_40_80_ortho"]
    assert_close(audio.dct_matrix(expected.shape[1], expected.shape[0], "ortho"), expected, 2e-5, "dct_40_80_ortho")


def test_log_norm_and_length_to_mask(fx):
    u = fx["utils"]
    assert_close(audio.log_norm(u["log_norm_in"][:, None]).squeeze(1), u["log_norm_out"], 1e-5, "log_norm_out")
    assert torch.equal(audio.length_to_mask(u["length_to_mask_in"]), u["length_to_mask_out"])
    lengths = u["length_to_mask_in"]
    wide = audio.length_to_mask(lengths, max_len=int(lengths.max()) + 2)
    assert wide.shape == (len(lengths), int(lengths.max()) + 2) and torch.equal(wide.sum(1), 2 + lengths.max() - lengths)


# ----------------------------------------------------------------------------- behaviour


def test_resample_keeps_a_tone_frequency_and_amplitude():
    f, amp, seconds = 440.0, 0.5, 0.5
    n = int(22050 * seconds)
    tone = amp * torch.sin(2 * math.pi * f * torch.arange(n, dtype=torch.float64) / 22050)
    out = audio.resample(tone.float(), 22050, 24000)
    assert out.shape == (math.ceil(n * 24000 / 22050),)
    ideal = amp * torch.sin(2 * math.pi * f * torch.arange(out.shape[0], dtype=torch.float64) / 24000)
    interior = slice(200, -200)  # the zero-padded edges ring
    assert (out[interior].double() - ideal[interior]).abs().max() < 2e-3
    # frequency from the FFT peak (0.25 Hz resolution with 4x zero padding)
    spectrum = torch.fft.rfft(out[interior].double(), n=4 * out.shape[0]).abs()
    peak_hz = spectrum.argmax().item() * 24000 / (4 * out.shape[0])
    assert abs(peak_hz - f) < 1.0


def test_resample_is_batched_and_identity_when_rates_match():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4410, generator=g)
    y = audio.resample(x, 44100, 16000)
    assert y.shape == (2, 3, 1600)
    assert_close(y[1, 2], audio.resample(x[1, 2], 44100, 16000), 1e-6, "batched resample")
    assert audio.resample(x, 24000, 24000) is x
    with pytest.raises(ValueError):
        audio.resample(x, 22050.5, 24000)


def test_mel_spectrogram_is_batched_and_dtype_preserving():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6000, generator=g) * 0.1
    mel = audio.log_mel(x)
    assert mel.shape == (2, 3, 80, 21)
    assert_close(mel[0, 1], audio.log_mel(x[0, 1]), 1e-5, "batched log_mel")
    mel64 = audio.log_mel(x.double())
    assert mel64.dtype == torch.float64
    assert_close(mel64, mel, 1e-4, "float64 vs float32 log_mel")
    with torch.inference_mode():
        assert torch.equal(audio.log_mel(x), mel)
    with pytest.raises(ValueError, match="too short"):
        audio.log_mel(torch.zeros(1000))


@pytest.mark.parametrize("device", DEVICES)
def test_features_on_device(device):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 7200, generator=g) * 0.1
    mel = audio.log_mel(x.to(device))
    wav16 = audio.resample(x.to(device), 24000, 16000)
    assert mel.device.type == device and wav16.device.type == device
    assert_close(mel.cpu(), audio.log_mel(x), 1e-4, "log_mel on device")
    assert_close(wav16.cpu(), audio.resample(x, 24000, 16000), 1e-5, "resample on device")


def test_load_audio_mixes_down_and_resamples(tmp_path):
    t = np.arange(22050) / 22050
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.ones_like(t)], axis=1)
    path = tmp_path / "tone.wav"
    soundfile.write(path, stereo, 22050, subtype="FLOAT")
    wave = audio.load_audio(path, sample_rate=24000)
    assert wave.dtype == torch.float32 and wave.shape == (24000,)
    native = audio.load_audio(path, sample_rate=22050)
    assert_close(native, torch.from_numpy(stereo.mean(1)).float(), 1e-6, "mono mix-down")


def test_load_audio_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav: no such audio file"):
        audio.load_audio(missing)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x01garbage, not audio" * 10)
    with pytest.raises(AudioError, match="corrupt.wav: cannot read audio") as info:
        audio.load_audio(corrupt)
    assert "\n" not in str(info.value)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="zero.wav"):
        audio.load_audio(zero_bytes)
    no_samples = tmp_path / "empty.wav"
    soundfile.write(no_samples, np.zeros((0, 1)), 24000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        audio.load_audio(no_samples)
    assert issubclass(AudioError, ValueError)


def test_trim_silence_matches_librosa():
    librosa = pytest.importorskip("librosa")
    g = torch.Generator().manual_seed(3)
    for n, start, stop in [(30000, 7000, 21000), (12000, 0, 5000), (20000, 15000, 20000)]:
        x = torch.randn(n, generator=g) * 1e-3
        x[start:stop] += 0.5 * torch.sin(0.05 * torch.arange(stop - start))
        expected, _ = librosa.effects.trim(x.numpy(), top_db=30)
        trimmed = audio.trim_silence(x, top_db=30)
        assert trimmed.shape[0] == expected.shape[0]
        assert torch.equal(trimmed, torch.from_numpy(expected))
