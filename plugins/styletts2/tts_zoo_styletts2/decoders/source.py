"""The harmonic-plus-noise excitation of the neural source-filter (NSF) vocoders.

Wang, Takaki & Yamagishi 2019, "Neural source-filter waveform models" (hn-NSF), as StyleTTS 2's
HiFi-GAN and iSTFTNet decoders use it. The float32 op order follows the reference exactly, so that
the source is bit-identical given the same random draws (fixtures README, section 9.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SineGen(nn.Module):
    """Sine waves at F0 and its harmonics, with Gaussian noise (no parameters).

    forward(f0 [B, S, 1] in Hz, sample rate) → (sine_waves [B, S, harmonic_num + 1], uv [B, S, 1],
    noise [B, S, harmonic_num + 1]). ``uv`` is 1.0 where f0 > ``voiced_threshold``; unvoiced samples
    carry only noise of std sine_amp / 3, voiced ones the sines plus noise of std ``noise_std``.

    The phase is accumulated at frame rate: the per-sample phase increment is linearly down-sampled
    by ``upsample_scale``, cumulated, scaled back and linearly up-sampled (the reference's way of
    avoiding a long float32 cumsum). Draws, in order, from torch's global generator:
    ``rand(B, harmonic_num + 1)`` (initial phases, harmonic 0 fixed at 0) and
    ``randn_like(sine_waves)``.
    """

    def __init__(
        self,
        sampling_rate: int = 24000,
        upsample_scale: int = 300,
        harmonic_num: int = 8,
        sine_amp: float = 0.1,
        noise_std: float = 0.003,
        voiced_threshold: float = 10.0,
    ):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.upsample_scale = upsample_scale
        self.harmonic_num = harmonic_num
        self.dim = harmonic_num + 1
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.voiced_threshold = voiced_threshold

    def _f02sine(self, f0_values: Tensor) -> Tensor:
        """Per-harmonic frequencies [B, S, dim] → unit sines [B, S, dim]."""
        # Phase increment per sample in cycles; the integer part does not change the phase.
        rad_values = (f0_values / self.sampling_rate) % 1
        rand_ini = torch.rand(f0_values.shape[0], f0_values.shape[2], device=f0_values.device)
        rand_ini[:, 0] = 0
        rad_values[:, 0, :] = rad_values[:, 0, :] + rand_ini
        # Note: the linear ×(1/scale) resampling reads samples scale·i + scale/2 ± 1/2 only, so the
        # initial phases added at sample 0 never reach the output; they are drawn for the RNG order.
        rad_values = F.interpolate(
            rad_values.transpose(1, 2), scale_factor=1 / self.upsample_scale, mode="linear"
        ).transpose(1, 2)
        phase = torch.cumsum(rad_values, dim=1) * 2 * math.pi
        phase = F.interpolate(
            phase.transpose(1, 2) * self.upsample_scale, scale_factor=self.upsample_scale, mode="linear"
        ).transpose(1, 2)
        return torch.sin(phase)

    def forward(self, f0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        harmonics = torch.arange(1, self.dim + 1, dtype=f0.dtype, device=f0.device)
        fn = f0 * harmonics  # [B, S, 1] · [dim] → [B, S, dim]
        sine_waves = self._f02sine(fn) * self.sine_amp
        uv = (f0 > self.voiced_threshold).to(f0.dtype)
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        # sine_waves is a transposed view; keep it so: normal_ draws a non-contiguous tensor in
        # another order than a contiguous one, and the reference's draws are the former.
        noise = noise_amp * torch.randn_like(sine_waves)
        sine_waves = sine_waves * uv + noise
        return sine_waves, uv, noise


class SourceModuleHnNSF(nn.Module):
    """Harmonic-plus-noise source: the SineGen harmonics merged into one excitation.

    forward(f0 [B, S, 1] in Hz at the sample rate) → (har_source [B, S, 1] = tanh(Linear(sines)),
    noise [B, S, 1], uv [B, S, 1]). The noise branch is drawn (``randn_like(uv)``, after SineGen's
    draws) but unused by the StyleTTS 2 generators; it is drawn all the same to keep the RNG order.
    The sines are computed without gradient, as in the reference; ``l_linear`` is trainable.
    """

    def __init__(
        self,
        sampling_rate: int = 24000,
        upsample_scale: int = 300,
        harmonic_num: int = 8,
        sine_amp: float = 0.1,
        add_noise_std: float = 0.003,
        voiced_threshold: float = 10.0,
    ):
        super().__init__()
        self.sine_amp = sine_amp
        self.noise_std = add_noise_std
        self.l_sin_gen = SineGen(
            sampling_rate, upsample_scale, harmonic_num, sine_amp, add_noise_std, voiced_threshold
        )
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, f0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            sine_waves, uv, _ = self.l_sin_gen(f0)
        sine_merge = self.l_tanh(self.l_linear(sine_waves))
        noise = torch.randn_like(uv) * self.sine_amp / 3
        return sine_merge, noise, uv
