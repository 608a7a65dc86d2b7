"""F0 (fundamental frequency) from a waveform with a signal-processing pitch tracker.

:func:`estimate_f0` gives one F0 value (Hz, 0 = unvoiced) per frame of :func:`tts_zoo.audio.log_mel`:
frame ``i`` is centred on sample ``i * hop_length`` and a wave of ``S`` samples has ``1 + S // hop_length``
frames (the centred STFT's count), so labels line up with the mel frame for frame.

Trackers (``method``), measured by ``benchmarks/pitch.py`` (synthetic harmonic signals with known F0;
espeak-ng speech of the demo voices scored against the other trackers' consensus; one thread):

* ``dio`` (default) — WORLD's DIO (Morise et al. 2009) refined by StoneMask, from ``pyworld``: 0.9
  cents median error on synthetic signals, 0.2-1.9 % gross errors on espeak-ng speech, ~20× faster
  than the others (RTF 0.05); it calls ~17 % of voiced frames unvoiced (mostly at voicing edges).
* ``harvest`` — WORLD's Harvest (Morise 2017) + StoneMask: the best voicing, but it halves the F0
  of the high espeak-ng female voices on 10-40 % of their frames (7.7 % gross errors overall), RTF ~1.
* ``pyin`` — probabilistic YIN (Mauch & Dixon 2014) from librosa (no extra package): 23-30 cents
  median error (pitch bins), over-voices, RTF ~1, and its first call compiles for ~20 s.

(torchcrepe ``tiny`` had no gross errors on espeak-ng but is about as slow as Harvest here and needs
torchaudio, which cannot be installed beside the CPU torch: it is measured, not offered.)

A failure on one input (empty, too short, non-finite, the tracker raising) is a :class:`PitchTrackingError`
that callers such as :mod:`tts_zoo.data.f0_labels` turn into a "missing" label.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tts_zoo.errors import TTSZooError

__all__ = ["METHODS", "PitchTrackingError", "TrackerUnavailableError", "estimate_f0", "frame_count", "tracker_version"]

Method = Literal["harvest", "dio", "pyin"]
METHODS: tuple[str, ...] = ("harvest", "dio", "pyin")


class PitchTrackingError(TTSZooError, ValueError):
    """The tracker could not produce F0 for this input (the caller marks the label missing)."""


class TrackerUnavailableError(TTSZooError, ImportError):
    """The tracker's package is not installed (a set-up problem, not a per-file failure)."""


def frame_count(n_samples: int, hop_length: int = 300) -> int:
    """Frames of a centred STFT (``tts_zoo.audio.log_mel``) over ``n_samples``: ``1 + n_samples // hop``."""
    return 1 + n_samples // hop_length


def _pyworld():
    try:
        import pyworld
    except ImportError as e:
        raise TrackerUnavailableError(
            "pitch tracker 'harvest'/'dio' needs pyworld: pip install pyworld-prebuilt "
            "(or choose method 'pyin', which needs only librosa)") from e
    return pyworld


def tracker_version(method: str) -> str:
    """The version of the package behind ``method`` (part of the F0 cache key)."""
    if method in ("harvest", "dio"):
        return str(getattr(_pyworld(), "__version__", "?"))
    import librosa

    return str(librosa.__version__)


def _fit(f0: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to ``n`` frames (trackers differ by at most a frame at the end)."""
    if len(f0) >= n:
        return f0[:n]
    return np.concatenate([f0, np.zeros(n - len(f0), dtype=f0.dtype)])


def _world(x: np.ndarray, sr: int, hop: int, fmin: float, fmax: float, method: str) -> np.ndarray:
    pw = _pyworld()
    period = 1000.0 * hop / sr  # ms; frame i at i * period, as the centred STFT
    track = pw.harvest if method == "harvest" else pw.dio
    coarse, times = track(x, sr, f0_floor=fmin, f0_ceil=fmax, frame_period=period)
    return pw.stonemask(x, coarse, times, sr)  # refines each voiced frame's F0 (instantaneous frequency)


def _pyin(x: np.ndarray, sr: int, hop: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    # A frame must hold two periods of fmin for YIN's difference function.
    frame = 1 << int(np.ceil(np.log2(max(2048 * sr / 22050, 2.2 * sr / fmin))))
    f0, voiced, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame, hop_length=hop,
                                 center=True, pad_mode="constant")
    return np.where(voiced, np.nan_to_num(f0), 0.0)


def estimate_f0(
    wave,
    sample_rate: int,
    hop_length: int = 300,
    fmin: float = 50.0,
    fmax: float = 600.0,
    method: Method = "dio",
) -> np.ndarray:
    """F0 per frame of a mono waveform.

    Args:
        wave: samples ``[S]`` (numpy array or torch tensor; any float dtype, nominally in [-1, 1]).
        sample_rate: its rate in Hz.
        hop_length: samples between frames (300 = the log-mel's hop at 24 kHz, 12.5 ms).
        fmin: lowest F0 searched, Hz.
        fmax: highest F0 searched, Hz.
        method: ``dio`` (default), ``harvest`` or ``pyin`` (see the module docstring).

    Returns:
        float32 ``[1 + S // hop_length]``: F0 in Hz per centred frame, 0 where unvoiced.

    Raises:
        PitchTrackingError: the input cannot be tracked (empty, shorter than a frame, non-finite
            samples, or the tracker failed); callers mark the label missing.
        TrackerUnavailableError: the tracker's package is not installed.
        ValueError: an unknown ``method`` or bad ranges (a programming/config error).
    """
    if method not in METHODS:
        raise ValueError(f"estimate_f0: unknown method {method!r} (choose one of {', '.join(METHODS)})")
    if not 0 < fmin < fmax < sample_rate / 2:
        raise ValueError(f"estimate_f0: need 0 < fmin < fmax < sample_rate/2, got fmin={fmin}, fmax={fmax}")
    if hasattr(wave, "detach"):  # a torch tensor
        wave = wave.detach().cpu().numpy()
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise PitchTrackingError(f"expected a mono wave [S], got shape {tuple(x.shape)}")
    if x.size < hop_length:
        raise PitchTrackingError(f"wave too short to track ({x.size} samples < hop {hop_length})")
    if not np.isfinite(x).all():
        raise PitchTrackingError("wave has non-finite samples (NaN/Inf)")
    x = np.ascontiguousarray(x)
    try:
        if method == "pyin":
            f0 = _pyin(x, sample_rate, hop_length, fmin, fmax)
        else:
            f0 = _world(x, sample_rate, hop_length, fmin, fmax, method)
    except TrackerUnavailableError:
        raise
    except Exception as e:  # the libraries raise assorted types on degenerate input
        raise PitchTrackingError(f"{method} failed: {' '.join(str(e).split()) or type(e).__name__}") from e
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    f0[f0 < 0] = 0.0
    return _fit(f0, frame_count(x.size, hop_length)).astype(np.float32)
