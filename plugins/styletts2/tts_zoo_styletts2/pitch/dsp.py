"""A signal-processing pitch tracker behind the pitch-extractor kind: it labels training data with F0.

It takes the wave (``input_kind = "wave"``), not the mel, so it is not a drop-in for
``model.pitch_extractor``; a recipe names it under ``data.f0_labels`` to say which tracker labels the
corpus (:mod:`tts_zoo.data.f0_labels` caches the labels beside the manifest), and the JDC network
learns from those labels in the ``styletts2_pitch_pretrain`` stage.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch
from torch import Tensor

from tts_zoo.interfaces import PitchExtractor
from tts_zoo.pitch import estimate_f0, tracker_version


class DSPPitchTracker(PitchExtractor):
    """F0 from the waveform with a DSP tracker (WORLD DIO/Harvest + StoneMask, or pYIN): data labels.

    DIO: Morise et al. 2009; Harvest: Morise 2017, "Harvest: A high-performance fundamental frequency
    estimator from speech signals"; StoneMask refines each voiced frame; pYIN: Mauch & Dixon 2014
    (librosa). Accuracy and speed of each: :mod:`tts_zoo.pitch` and ``benchmarks/pitch.py``.

    forward(wave [B, S] at ``sample_rate``) → (f0 [B, 1 + S // hop_length] Hz, 0 = unvoiced, None,
    None). Runs on the CPU in numpy, item by item, with no gradient; a failure raises
    :class:`tts_zoo.pitch.PitchTrackingError`.

    Args:
        method: Tracker: dio (default; fewest gross errors, fastest), harvest (best voicing) or pyin.
        fmin: Lowest F0 searched, in Hz.
        fmax: Highest F0 searched, in Hz.
        sample_rate: Sample rate of the waves it is given, in Hz.
        hop_length: Samples between frames (300 = the log-mel's hop at 24 kHz).
    """

    input_kind = "wave"

    def __init__(
        self,
        method: Literal["dio", "harvest", "pyin"] = "dio",
        fmin: float = 50.0,
        fmax: float = 600.0,
        sample_rate: int = 24000,
        hop_length: int = 300,
    ):
        super().__init__()
        if not 0 < fmin < fmax < sample_rate / 2:
            raise ValueError(f"dsp_pitch: need 0 < fmin < fmax < sample_rate/2 (got fmin={fmin}, fmax={fmax})")
        self.method, self.fmin, self.fmax = method, float(fmin), float(fmax)
        self.sample_rate, self.hop_length = sample_rate, hop_length

    def track(self, wave) -> np.ndarray:
        """One wave [S] (numpy or tensor) → float32 F0 [1 + S // hop_length]."""
        return estimate_f0(wave, self.sample_rate, self.hop_length, self.fmin, self.fmax, self.method)

    @torch.no_grad()
    def forward(self, wave: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        if wave.dim() != 2:
            raise ValueError(f"dsp_pitch: expected waves [B, S], got shape {tuple(wave.shape)}")
        f0 = [torch.from_numpy(self.track(w)) for w in wave.detach().float().cpu()]
        return torch.stack(f0).to(wave.device), None, None

    def describe(self) -> dict:
        """The settings that change the labels (the F0 cache's key), with the tracker package's version."""
        return {"tracker": self.method, "version": tracker_version(self.method), "fmin": self.fmin,
                "fmax": self.fmax, "sample_rate": self.sample_rate, "hop_length": self.hop_length}
