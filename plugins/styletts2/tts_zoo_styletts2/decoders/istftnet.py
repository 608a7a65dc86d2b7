"""StyleTTS 2's iSTFTNet decoder: the decoder body + an iSTFTNet generator with the NSF source.

Kaneko et al. 2022 (iSTFTNet: the HiFi-GAN generator stops early and predicts a small STFT, magnitude
and phase, inverted by an inverse STFT), with the hn-NSF harmonic source of Wang et al. 2019 fed to
every stage as its STFT, and AdaIN style conditioning, as in Li et al. 2023 (``Modules/istftnet.py``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import weight_norm
from .base import AdaINResBlock1, StyleTTS2Decoder, channels_last, conv, fast_path, mrf, use_time_major
from .source import SourceModuleHnNSF

LRELU_SLOPE = 0.1


class ISTFTNetGenerator(nn.Module):
    """iSTFTNet generator with the NSF source.

    forward(x [B, upsample_initial_channel, T], s [B, style_dim], f0 [B, T] in Hz) → waveform
    [B, 1, T·prod(upsample_rates)·gen_istft_hop_size]. The source enters as its STFT (magnitude and
    phase, [B, n_fft/2 + 1, frames] each); pass ``har_spec`` and ``har_phase`` to inject a stored
    STFT, or ``har_source`` [B, 1, S] to inject the excitation (then nothing is drawn). The phase of
    near-real bins flips between ±π under one-ulp changes (fixtures README 9.3), hence injection.
    The window is scipy's periodic Hann cast to float32 (= float64 torch.hann_window, cast).
    """

    def __init__(
        self,
        style_dim: int,
        resblock_kernel_sizes: list[int],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        resblock_dilation_sizes: list[list[int]],
        upsample_kernel_sizes: list[int],
        gen_istft_n_fft: int,
        gen_istft_hop_size: int,
        sampling_rate: int = 24000,
        harmonic_num: int = 8,
        voiced_threshold: float = 10.0,
    ):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.upsample_scale = math.prod(upsample_rates) * gen_istft_hop_size
        self.post_n_fft = gen_istft_n_fft
        self.hop_size = gen_istft_hop_size
        self.m_source = SourceModuleHnNSF(
            sampling_rate, self.upsample_scale, harmonic_num, voiced_threshold=voiced_threshold
        )
        self.noise_convs = nn.ModuleList()
        self.noise_res = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, c_out = upsample_initial_channel // 2**i, upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(AdaINResBlock1(ch, k, d, style_dim))
            if i + 1 < self.num_upsamples:
                # Strided conv from the source-STFT frame rate down to this stage's rate.
                stride = math.prod(upsample_rates[i + 1 :])
                self.noise_convs.append(
                    nn.Conv1d(gen_istft_n_fft + 2, ch, kernel_size=stride * 2, stride=stride, padding=(stride + 1) // 2)
                )
                self.noise_res.append(AdaINResBlock1(ch, 7, [1, 3, 5], style_dim))
            else:
                self.noise_convs.append(nn.Conv1d(gen_istft_n_fft + 2, ch, kernel_size=1))
                self.noise_res.append(AdaINResBlock1(ch, 11, [1, 3, 5], style_dim))
        self.conv_post = weight_norm(nn.Conv1d(ch, gen_istft_n_fft + 2, 7, 1, padding=3))
        self.reflection_pad = nn.ReflectionPad1d((1, 0))
        window = torch.hann_window(gen_istft_n_fft, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)

    def harmonic_source(self, f0: Tensor) -> Tensor:
        """F0 [B, T] (Hz) → NSF excitation [B, T·upsample_scale, 1] (draws from the global RNG)."""
        f0 = F.interpolate(f0[:, None], scale_factor=float(self.upsample_scale), mode="nearest").transpose(1, 2)
        har_source, _, _ = self.m_source(f0)
        return har_source

    def source_stft(self, har_source: Tensor) -> tuple[Tensor, Tensor]:
        """Excitation [B, S] → (|STFT|, angle) [B, n_fft/2 + 1, S/hop + 1] each."""
        spec = torch.stft(
            har_source, self.post_n_fft, self.hop_size, self.post_n_fft, window=self.window, return_complex=True
        )
        return torch.abs(spec), torch.angle(spec)

    def forward(
        self,
        x: Tensor,
        s: Tensor,
        f0: Optional[Tensor],
        har_source: Optional[Tensor] = None,
        har_spec: Optional[Tensor] = None,
        har_phase: Optional[Tensor] = None,
    ) -> Tensor:
        if har_spec is None or har_phase is None:
            # The reference feeds the source without gradient (its l_linear is not trained here).
            with torch.no_grad():
                if har_source is None:
                    har_source = self.harmonic_source(f0).transpose(1, 2)
                har_spec, har_phase = self.source_stft(har_source.squeeze(1))
        har = torch.cat([har_spec, har_phase], dim=1)

        fast = fast_path()  # inference: the same ops, in place (see base.snake_)
        time_major = use_time_major(x)  # channels-last convolutions (see base.conv)
        if time_major:
            x, har = channels_last(x), channels_last(har)
        k = self.num_kernels
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, LRELU_SLOPE, inplace=fast and i > 0)  # stage 0's x is the caller's
            x_source = self.noise_res[i](conv(self.noise_convs[i], har, time_major), s)
            x = conv(self.ups[i], x, time_major)
            if i == self.num_upsamples - 1:
                x = _reflect_first_sample(x) if time_major else self.reflection_pad(x)
            x = x.add_(x_source) if fast else x + x_source
            x = mrf(self.resblocks[i * k : (i + 1) * k], x, s, fast)
        x = conv(self.conv_post, F.leaky_relu(x, inplace=fast), time_major)  # default slope 0.01 here, as in the reference
        n_bins = self.post_n_fft // 2 + 1
        spec = torch.exp(x[:, :n_bins, :])
        phase = torch.sin(x[:, n_bins:, :])
        wave = torch.istft(
            spec * torch.exp(phase * 1j), self.post_n_fft, self.hop_size, self.post_n_fft, window=self.window
        )
        return wave.unsqueeze(-2)


def _reflect_first_sample(x: Tensor) -> Tensor:
    """``ReflectionPad1d((1, 0))`` of a time-major map, written straight into time-major memory (the
    module returns [B, C, T] memory, which would then be copied back: 20 ms against 1 ms here)."""
    out = x.new_empty(x.shape[0], x.shape[2] + 1, x.shape[1]).transpose(1, 2)
    out[..., 1:] = x
    out[..., :1] = x[..., 1:2]
    return out


class ISTFTNetDecoder(StyleTTS2Decoder):
    """StyleTTS 2 decoder with an iSTFTNet generator (NSF source fed as its STFT, AdaIN style).

    Li et al. 2023 (StyleTTS 2) on Kaneko et al. 2022 (iSTFTNet) and Wang et al. 2019 (hn-NSF source).
    forward(aligned [B, dim_in, F], f0 [B, 2F] Hz, energy [B, 2F], style [B, style_dim])
    → waveform [B, 1, samples_per_frame·F] at 24 kHz;
    samples_per_frame = 2·prod(upsample_rates)·gen_istft_hop_size (600 with the official rates).
    Draws rand(B, 9), randn(B, S, 9), randn(B, S, 1) from torch's global generator (the NSF source).

    Args:
        dim_in: Width of the aligned text features (model hidden_dim).
        style_dim: Width of the acoustic style vector.
        resblock_kernel_sizes: Kernel sizes of the multi-receptive-field ResBlocks.
        upsample_rates: Upsampling factor of each generator stage.
        upsample_initial_channel: Generator input width (halved at each stage).
        resblock_dilation_sizes: Dilations of each ResBlock's convs.
        upsample_kernel_sizes: Kernel size of each transposed-conv upsampler.
        gen_istft_n_fft: FFT size (and window length) of the output inverse STFT.
        gen_istft_hop_size: Hop of the output inverse STFT.
        hidden_dim: Width of the decoder body's blocks (the reference's hard-wired 1024).
        asr_res_dim: Width of the re-injected aligned features (the reference's hard-wired 64).
        mel_head_bins: Mel bins of a training-only 1×1 read-out of the log-mel from the generator input, trained by stage 1's lambda_body_mel (not in the reference; 0 = none, the official layout).
    """

    def __init__(
        self,
        dim_in: int = 512,
        style_dim: int = 128,
        resblock_kernel_sizes: list[int] = [3, 7, 11],  # noqa: B006 (read only)
        upsample_rates: list[int] = [10, 6],  # noqa: B006
        upsample_initial_channel: int = 512,
        resblock_dilation_sizes: list[list[int]] = [[1, 3, 5], [1, 3, 5], [1, 3, 5]],  # noqa: B006
        upsample_kernel_sizes: list[int] = [20, 12],  # noqa: B006
        gen_istft_n_fft: int = 20,
        gen_istft_hop_size: int = 5,
        hidden_dim: int = 1024,
        asr_res_dim: int = 64,
        mel_head_bins: int = 0,
    ):
        super().__init__(dim_in, style_dim, hidden_dim, asr_res_dim, upsample_initial_channel, mel_head_bins)
        self.generator = ISTFTNetGenerator(
            style_dim,
            resblock_kernel_sizes,
            upsample_rates,
            upsample_initial_channel,
            resblock_dilation_sizes,
            upsample_kernel_sizes,
            gen_istft_n_fft,
            gen_istft_hop_size,
        )
        self.samples_per_frame = 2 * self.generator.upsample_scale
