"""The audio front end: the one place features are computed (torch, CPU or GPU, batched).

Everything here reproduces the numbers of the reference StyleTTS 2 implementation, which used
torchaudio (not a dependency here: every PyPI build is CUDA-linked and pinned to one torch release):

* :func:`log_mel` is the reference ``preprocess()``: ``MelSpectrogram(n_mels=80, n_fft=2048,
  win_length=1200, hop_length=300)`` with ``sample_rate`` left at torchaudio's default 16000 (so the
  HTK filterbank is laid out for 0-8 kHz although the audio is 24 kHz — the aligner, pitch extractor
  and checkpoints were trained that way), then ``(log(1e-5 + mel) - MEL_MEAN) / MEL_STD``.
* The filterbank, the DCT matrix and the resampling kernels are built in float32 in torchaudio's op
  order, which reproduces its values bit for bit (a float64 build differs by ~1e-6).
* :func:`resample` is torchaudio's band-limited ``sinc_interp_hann`` resampler (Smith, "Digital Audio
  Resampling"), any integer rates.

Shapes: ``[..., S]`` means any leading batch dimensions; they are kept.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_zoo.errors import TTSZooError

MEL_MEAN = -4.0
MEL_STD = 4.0

__all__ = [
    "MEL_MEAN",
    "MEL_STD",
    "AudioError",
    "dct_matrix",
    "length_to_mask",
    "load_audio",
    "log_mel",
    "log_norm",
    "mel_filterbank",
    "mel_spectrogram",
    "resample",
    "resample_kernel",
    "trim_silence",
]


class AudioError(TTSZooError, ValueError):
    """An audio file is missing, unreadable or empty (a one-line message naming the file)."""


# --------------------------------------------------------------------------------------------
# Cached constants. Built once on the CPU in float32 (so every device gets the same numbers),
# then moved/cast per (device, dtype). Callers must not modify the returned tensors.


def _on(t: Tensor, device: Optional[torch.device], dtype: Optional[torch.dtype]) -> Tensor:
    return t.to(device=device or t.device, dtype=dtype or t.dtype)


@lru_cache(maxsize=32)
def _mel_filterbank_cpu(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    # torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk"), same ops in the same order.
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp_min(torch.minimum(down, up), 0.0)


def mel_filterbank(
    n_freqs: int = 1025,
    n_mels: int = 80,
    *,
    sample_rate: int = 16000,
    f_min: float = 0.0,
    f_max: Optional[float] = None,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """HTK triangular mel filterbank without area normalisation, ``[n_freqs, n_mels]``.

    ``f_max`` defaults to ``sample_rate // 2``; the linear-frequency bins span 0..``sample_rate // 2``.
    """
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    fb = _mel_filterbank_cpu(n_freqs, n_mels, sample_rate, float(f_min), f_max)
    return _on(fb, device, dtype)


@lru_cache(maxsize=32)
def _constant(kind: str, args: tuple, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Per-device/dtype cache of the CPU float32 constants (window, filterbank, DCT, kernels).

    Made outside inference mode: a cached inference tensor would break every later autograd use
    (e.g. the STFT loss in training after a synthesis in the same process)."""
    with torch.inference_mode(False):
        if kind == "window":
            cpu = torch.hann_window(*args)
        elif kind == "fb":
            cpu = _mel_filterbank_cpu(*args)
        elif kind == "dct":
            cpu = _dct_cpu(*args)
        else:  # "resample"
            cpu = resample_kernel(*args)[0]
        return cpu.to(device=device, dtype=dtype, copy=True)  # copy: never a cached inference tensor


# --------------------------------------------------------------------------------------------
# Spectrograms


def mel_spectrogram(
    wave: Tensor,
    *,
    sample_rate: int = 16000,
    n_fft: int = 2048,
    win_length: int = 1200,
    hop_length: int = 300,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: Optional[float] = None,
    power: float = 2.0,
    center: bool = True,
) -> Tensor:
    """Mel spectrogram as ``torchaudio.transforms.MelSpectrogram``: wave ``[..., S]`` →
    ``[..., n_mels, 1 + S // hop_length]`` (with ``center``).

    STFT with ``torch.hann_window(win_length)`` (float32, periodic), reflect padding, ``|X|**power``,
    then the HTK filterbank of :func:`mel_filterbank` (``sample_rate`` only lays out that filterbank).
    """
    if not wave.is_floating_point():
        wave = wave.float()
    shape = wave.shape
    x = wave.reshape(-1, shape[-1])
    if center and shape[-1] <= n_fft // 2:
        raise ValueError(f"mel_spectrogram: {shape[-1]} samples is too short for n_fft={n_fft} (needs > {n_fft // 2})")
    window = _constant("window", (win_length,), x.device, x.dtype)
    spec = torch.stft(
        x,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = spec.abs() if power == 1.0 else spec.abs().pow(power)
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    fb = _constant("fb", (n_fft // 2 + 1, n_mels, sample_rate, float(f_min), f_max), x.device, x.dtype)
    mel = torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)  # torchaudio's MelScale
    return mel.reshape(shape[:-1] + mel.shape[-2:])


def log_mel(wave: Tensor) -> Tensor:
    """The reference ``preprocess()``: wave ``[..., S]`` (24 kHz) → normalised log-mel ``[..., 80, 1 + S // 300]``.

    ``(log(1e-5 + mel) - MEL_MEAN) / MEL_STD`` of :func:`mel_spectrogram` with its defaults (filterbank
    laid out for 16 kHz, as the reference never passed its sample rate).
    """
    mel = mel_spectrogram(wave)
    return (torch.log(1e-5 + mel) - MEL_MEAN) / MEL_STD


# --------------------------------------------------------------------------------------------
# Resampling


def _reduced_ratio(orig_sr: int, new_sr: int) -> tuple[int, int]:
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr or orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"resample: sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    gcd = math.gcd(int(orig_sr), int(new_sr))
    return int(orig_sr) // gcd, int(new_sr) // gcd


def resample_kernel(
    orig_sr: int, new_sr: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> tuple[Tensor, int]:
    """Polyphase windowed-sinc kernel ``[new, 1, 2 * width + orig]`` (float32, CPU) and ``width``, where
    ``orig:new`` is the reduced rate ratio (torchaudio's ``sinc_interp_hann``).

    Output sample j of each block of ``new`` sits at input time ``j * orig / new``; the sinc is cut
    at ``lowpass_filter_width`` zero crossings of the low-pass at ``rolloff * min(orig, new) / 2``.
    """
    if lowpass_filter_width <= 0:
        raise ValueError("resample: lowpass_filter_width must be positive")
    orig, new = _reduced_ratio(orig_sr, new_sr)
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    # float32 throughout, as torchaudio.functional.resample builds it for a float32 waveform.
    idx = torch.arange(-width, width + orig, dtype=torch.float32)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new + idx
    t = (t * base).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t)
    kernel = kernel * (window * (base / orig))
    return kernel, width


def resample(
    wave: Tensor, orig_sr: int, new_sr: int, *, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> Tensor:
    """Band-limited resampling ``[..., S]`` → ``[..., ceil(S * new_sr / orig_sr)]`` (torchaudio's
    ``resample`` / ``transforms.Resample``: sinc_interp_hann, width 6, rolloff 0.99).

    Any integer rates (24k→16k for WavLM, 22.05k→24k for LJSpeech, ...); identity when equal.
    """
    orig, new = _reduced_ratio(orig_sr, new_sr)
    if orig == new:
        return wave
    if not wave.is_floating_point():
        wave = wave.float()
    kernel = _constant("resample", (orig, new, lowpass_filter_width, rolloff), wave.device, wave.dtype)
    width = (kernel.shape[-1] - orig) // 2
    shape = wave.shape
    x = wave.reshape(-1, shape[-1])
    length = shape[-1]
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x[:, None], kernel, stride=orig)  # [N, new, blocks]: one row per output phase
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    y = y[:, : math.ceil(new * length / orig)]
    return y.reshape(shape[:-1] + y.shape[-1:])


# --------------------------------------------------------------------------------------------
# Small utilities of the reference (utils.py, ASR MFCC)


@lru_cache(maxsize=8)
def _dct_cpu(n_mfcc: int, n_mels: int, norm: Optional[str]) -> Tensor:
    # torchaudio.functional.create_dct, float32, same op order.
    n = torch.arange(float(n_mels))
    k = torch.arange(float(n_mfcc)).unsqueeze(1)
    dct = torch.cos(math.pi / float(n_mels) * (n + 0.5) * k)  # [n_mfcc, n_mels]
    if norm is None:
        dct = dct * 2.0
    else:
        dct[0] *= 1.0 / math.sqrt(2.0)
        dct = dct * math.sqrt(2.0 / float(n_mels))
    return dct.t().contiguous()


def dct_matrix(n_mfcc: int, n_mels: int, norm: Optional[str] = "ortho") -> Tensor:
    """DCT-II matrix ``[n_mels, n_mfcc]`` (torchaudio's ``create_dct``); MFCC = mel^T @ dct."""
    if norm not in (None, "ortho"):
        raise ValueError(f"dct_matrix: norm must be None or 'ortho', got {norm!r}")
    return _dct_cpu(n_mfcc, n_mels, norm).clone()


def log_norm(x: Tensor, mean: float = MEL_MEAN, std: float = MEL_STD, dim: int = 2) -> Tensor:
    """Log of the L2 norm of the de-normalised mel energies: ``log(||exp(x * std + mean)||_2)`` over
    ``dim``. The training loops call it as ``log_norm(mel[:, None]).squeeze(1)`` → ``[B, F]``
    (the energy target)."""
    return torch.log(torch.exp(x * std + mean).norm(dim=dim))


def length_to_mask(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Padding mask: lengths ``[B]`` → bool ``[B, max_len]``, **True = padding**.

    ``max_len`` defaults to ``lengths.max()``.
    """
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Files and silence


def load_audio(path: Union[str, Path], sample_rate: int = 24000) -> Tensor:
    """Read an audio file with soundfile, mix down to mono and resample: → float32 ``[S]``.

    Raises :class:`AudioError` (one line, naming the file) for a missing, unreadable or empty file.
    """
    import soundfile  # here, so that importing this module stays light

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such audio file")
    if not p.is_file():
        raise AudioError(f"{p}: not a file")
    try:
        data, sr = soundfile.read(str(p), dtype="float32", always_2d=True)  # [S, C]
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError by format
        reason = " ".join(str(e).split()) or type(e).__name__
        raise AudioError(f"{p}: cannot read audio ({reason})") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{p}: empty audio file (0 samples)")
    wave = torch.from_numpy(data).mean(dim=1)
    return resample(wave, int(sr), sample_rate)


def trim_silence(
    wave: Tensor, top_db: float = 30.0, *, frame_length: int = 2048, hop_length: int = 512
) -> Tensor:
    """Cut leading and trailing silence, as ``librosa.effects.trim`` (the reference's compute_style).

    Frame RMS (frames centred, zero padding) in dB relative to the loudest frame; frames above
    ``-top_db`` are speech; returns ``wave[..., start:end]`` with start/end on hop boundaries. A
    multichannel ``[C, S]`` wave is trimmed jointly (loudest channel per frame).
    """
    x = wave if wave.is_floating_point() else wave.float()
    pad = frame_length // 2
    frames = F.pad(x.reshape(-1, x.shape[-1]), (pad, pad)).unfold(-1, frame_length, hop_length)
    rms = frames.pow(2).mean(dim=-1).sqrt()  # [C, n_frames]
    amin = 1e-5
    db = 20.0 * torch.log10(rms.clamp_min(amin)) - 20.0 * torch.log10(rms.max().clamp_min(amin))
    loud = torch.nonzero(db.amax(dim=0) > -top_db).flatten()
    if loud.numel() == 0:
        return wave[..., :0]
    start = int(loud[0]) * hop_length
    end = min(wave.shape[-1], (int(loud[-1]) + 1) * hop_length)
    return wave[..., start:end]
