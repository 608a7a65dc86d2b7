"""Multi-resolution spectrogram discriminator, as StyleTTS 2 uses it (its ``MultiResSpecDiscriminator``).

Parameter names follow the reference (``Modules/discriminators.py``):
``discriminators.{i}.discriminators.{j}`` and ``discriminators.{i}.out``, old-style weight norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.interfaces import Discriminator, DiscriminatorOutput
from tts_zoo_styletts2.layers import weight_norm

LRELU_SLOPE = 0.1


class SpecDiscriminator(nn.Module):
    """One resolution: |STFT| of the wave as a one-channel image [B, 1, frames, bins], then 2-D convs.

    x [B, 1, S] → (scores [B, frames·bins'], 6 feature maps). Frequency is strided by 2 three times.
    """

    def __init__(self, fft_size: int = 1024, shift_size: int = 120, win_length: int = 600, channels: int = 32):
        super().__init__()
        self.fft_size = fft_size
        self.shift_size = shift_size
        self.win_length = win_length
        # Not a checkpoint tensor in the reference: a non-persistent buffer follows .to(device).
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        c = channels
        self.discriminators = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, kernel_size=(3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, 3, 1, 1))

    def spectrogram(self, x: Tensor) -> Tensor:
        """[B, S] → magnitude [B, frames, fft_size // 2 + 1] (centred, reflect padding)."""
        spec = torch.stft(
            x, self.fft_size, self.shift_size, self.win_length, self.window.to(x.dtype), return_complex=True
        )
        return spec.abs().transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        y = self.spectrogram(x.squeeze(1)).unsqueeze(1)
        fmap = []
        for conv in self.discriminators:
            # in place: the conv's output is saved by no one, and LeakyReLU's backward can read the sign
            # from its result, so the graph keeps one map per layer instead of two (the same numbers)
            y = F.leaky_relu(conv(y), LRELU_SLOPE, inplace=True)
            fmap.append(y)
        y = self.out(y)
        fmap.append(y)
        return y.flatten(1), fmap


class MultiResSpecDiscriminator(Discriminator):
    """Multi-resolution magnitude-spectrogram discriminator (StyleTTS 2's MSD; 3 STFT resolutions).

    Li et al. 2023 (StyleTTS 2) replace HiFi-GAN's multi-scale discriminator by spectrogram
    discriminators at three STFT resolutions (as in UnivNet's multi-resolution discriminator, Jang et
    al. 2021): |STFT| [B, 1, frames, bins] → five (3, 9)/(3, 3) 2-D convs with LeakyReLU(0.1) → a
    (3, 3) output conv.

    forward(real [B, 1, S], fake [B, 1, S]) → DiscriminatorOutput: per resolution, scores
    [B, frames·bins'] and 6 feature maps (the reference's ``y_d_rs, y_d_gs, fmap_rs, fmap_gs``).

    Args:
        fft_sizes: FFT size of each resolution.
        hop_sizes: hop of each resolution.
        win_lengths: Hann window length of each resolution.
        channels: width of every conv (the reference hard-codes 32).
    """

    def __init__(
        self,
        fft_sizes: list[int] = (1024, 2048, 512),
        hop_sizes: list[int] = (120, 240, 50),
        win_lengths: list[int] = (600, 1200, 240),
        channels: int = 32,
    ):
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.discriminators = nn.ModuleList(
            SpecDiscriminator(n, h, w, channels) for n, h, w in zip(fft_sizes, hop_sizes, win_lengths)
        )

    def forward(self, real: Tensor, fake: Tensor) -> DiscriminatorOutput:
        out = DiscriminatorOutput([], [], [], [])
        for d in self.discriminators:
            score_r, fmap_r = d(real)
            score_g, fmap_g = d(fake)
            out.real_scores.append(score_r)
            out.fake_scores.append(score_g)
            out.real_features.append(fmap_r)
            out.fake_features.append(fmap_g)
        return out
