"""StyleTTS 2's HiFi-GAN decoder: the decoder body + an NSF HiFi-GAN generator with Snake and AdaIN.

Kong et al. 2020 (HiFi-GAN), with the hn-NSF harmonic source of Wang et al. 2019 injected at every
upsampling stage and AdaIN style conditioning, as in Li et al. 2023 (StyleTTS 2, ``Modules/hifigan.py``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import weight_norm
from .base import AdaINResBlock1, StyleTTS2Decoder, channels_last, conv, fast_path, mrf, use_time_major, snake, snake_
from .source import SourceModuleHnNSF


class HiFiGANGenerator(nn.Module):
    """NSF HiFi-GAN generator.

    forward(x [B, upsample_initial_channel, T], s [B, style_dim], f0 [B, T] in Hz,
    har_source [B, 1, T·prod(upsample_rates)] | None) → waveform [B, 1, T·prod(upsample_rates)] in
    [-1, 1]. Each stage: Snake, transposed-conv upsampling, plus the harmonic source brought to that
    rate by a strided conv and an AdaIN ResBlock, then the mean of the multi-receptive-field
    ResBlocks. ``har_source`` injects a stored excitation (then nothing is drawn).
    """

    def __init__(
        self,
        style_dim: int,
        resblock_kernel_sizes: list[int],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        resblock_dilation_sizes: list[list[int]],
        upsample_kernel_sizes: list[int],
        sampling_rate: int = 24000,
        harmonic_num: int = 8,
        voiced_threshold: float = 10.0,
    ):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.upsample_scale = math.prod(upsample_rates)
        self.m_source = SourceModuleHnNSF(
            sampling_rate, self.upsample_scale, harmonic_num, voiced_threshold=voiced_threshold
        )
        self.noise_convs = nn.ModuleList()
        self.noise_res = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, c_out = upsample_initial_channel // 2**i, upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(c_in, c_out, k, u, padding=u // 2 + u % 2, output_padding=u % 2))
            )
            if i + 1 < len(upsample_rates):
                # Strided conv from the sample rate down to this stage's rate.
                stride = math.prod(upsample_rates[i + 1 :])
                self.noise_convs.append(
                    nn.Conv1d(1, c_out, kernel_size=stride * 2, stride=stride, padding=(stride + 1) // 2)
                )
                self.noise_res.append(AdaINResBlock1(c_out, 7, [1, 3, 5], style_dim))
            else:
                self.noise_convs.append(nn.Conv1d(1, c_out, kernel_size=1))
                self.noise_res.append(AdaINResBlock1(c_out, 11, [1, 3, 5], style_dim))

        self.alphas = nn.ParameterList([nn.Parameter(torch.ones(1, upsample_initial_channel, 1))])
        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = upsample_initial_channel // 2 ** (i + 1)
            self.alphas.append(nn.Parameter(torch.ones(1, ch, 1)))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(AdaINResBlock1(ch, k, d, style_dim))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def harmonic_source(self, f0: Tensor) -> Tensor:
        """F0 [B, T] (Hz) → NSF excitation [B, T·prod(upsample_rates), 1] (draws from the global RNG)."""
        f0 = F.interpolate(f0[:, None], scale_factor=float(self.upsample_scale), mode="nearest").transpose(1, 2)
        har_source, _, _ = self.m_source(f0)
        return har_source

    def forward(self, x: Tensor, s: Tensor, f0: Optional[Tensor], har_source: Optional[Tensor] = None) -> Tensor:
        if har_source is None:
            har_source = self.harmonic_source(f0).transpose(1, 2)
        fast = fast_path()  # inference: the same ops, in place (see base.snake_)
        time_major = use_time_major(x)  # channels-last convolutions (see base.conv)
        if fast:  # a copy, as snake_ runs in place
            x = channels_last(x) if time_major else x.clone()
        k = self.num_kernels
        for i in range(self.num_upsamples):
            x = snake_(x, self.alphas[i]) if fast else snake(x, self.alphas[i])
            x_source = self.noise_res[i](conv(self.noise_convs[i], har_source, time_major), s)
            x = conv(self.ups[i], x, time_major).add_(x_source) if fast else self.ups[i](x) + x_source
            x = mrf(self.resblocks[i * k : (i + 1) * k], x, s, fast)
        x = snake_(x, self.alphas[self.num_upsamples]) if fast else snake(x, self.alphas[self.num_upsamples])
        return torch.tanh(conv(self.conv_post, x, time_major))


class HiFiGANDecoder(StyleTTS2Decoder):
    """StyleTTS 2 decoder with an NSF HiFi-GAN generator (Snake activations, AdaIN style).

    Li et al. 2023 (StyleTTS 2) on Kong et al. 2020 (HiFi-GAN) and Wang et al. 2019 (hn-NSF source).
    forward(aligned [B, dim_in, F], f0 [B, 2F] Hz, energy [B, 2F], style [B, style_dim])
    → waveform [B, 1, samples_per_frame·F] at 24 kHz; samples_per_frame = 2·prod(upsample_rates)
    (600 with the official rates).
    Draws rand(B, 9), randn(B, S, 9), randn(B, S, 1) from torch's global generator (the NSF source).

    Args:
        dim_in: Width of the aligned text features (model hidden_dim).
        style_dim: Width of the acoustic style vector.
        resblock_kernel_sizes: Kernel sizes of the multi-receptive-field ResBlocks.
        upsample_rates: Upsampling factor of each generator stage.
        upsample_initial_channel: Generator input width (halved at each stage).
        resblock_dilation_sizes: Dilations of each ResBlock's convs.
        upsample_kernel_sizes: Kernel size of each transposed-conv upsampler.
        hidden_dim: Width of the decoder body's blocks (the reference's hard-wired 1024).
        asr_res_dim: Width of the re-injected aligned features (the reference's hard-wired 64).
        mel_head_bins: Mel bins of a training-only 1×1 read-out of the log-mel from the generator input, trained by stage 1's lambda_body_mel (not in the reference; 0 = none, the official layout).
    """

    # The reference's inference shifts the aligned inputs of the HiFi-GAN decoder one frame right
    # (Inference_LibriTTS.ipynb); StyleTTS2.decode reads this.
    aligned_frame_shift = 1

    def __init__(
        self,
        dim_in: int = 512,
        style_dim: int = 128,
        resblock_kernel_sizes: list[int] = [3, 7, 11],  # noqa: B006 (read only)
        upsample_rates: list[int] = [10, 5, 3, 2],  # noqa: B006
        upsample_initial_channel: int = 512,
        resblock_dilation_sizes: list[list[int]] = [[1, 3, 5], [1, 3, 5], [1, 3, 5]],  # noqa: B006
        upsample_kernel_sizes: list[int] = [20, 10, 6, 4],  # noqa: B006
        hidden_dim: int = 1024,
        asr_res_dim: int = 64,
        mel_head_bins: int = 0,
    ):
        super().__init__(dim_in, style_dim, hidden_dim, asr_res_dim, upsample_initial_channel, mel_head_bins)
        self.generator = HiFiGANGenerator(
            style_dim,
            resblock_kernel_sizes,
            upsample_rates,
            upsample_initial_channel,
            resblock_dilation_sizes,
            upsample_kernel_sizes,
        )
        self.samples_per_frame = 2 * self.generator.upsample_scale
