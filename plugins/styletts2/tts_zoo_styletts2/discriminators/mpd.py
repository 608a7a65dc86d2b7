"""Multi-period discriminator (HiFi-GAN, Kong et al. 2020), as StyleTTS 2 uses it.

Parameter names follow the reference (``Modules/discriminators.py``): ``discriminators.{i}.convs.{j}``
and ``discriminators.{i}.conv_post``, old-style weight norm (``weight_g`` / ``weight_v``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.interfaces import Discriminator, DiscriminatorOutput
from tts_zoo_styletts2.layers import weight_norm

LRELU_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """One period-p sub-discriminator: the wave folded to [B, 1, S/p, p], then (k, 1) 2-D convs.

    x [B, 1, S] → (scores [B, -1], feature maps: one per conv, the last one before flattening).
    """

    def __init__(self, period: int, channels: tuple[int, ...] | list[int], kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        pad = (kernel_size - 1) // 2
        widths = [1, *channels]
        # All but the last conv stride along time; the last keeps the resolution.
        strides = [stride] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(pad, 0)))
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides)
        )
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:  # reflect-pad the end to a multiple of the period
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return x.flatten(1), fmap


class MultiPeriodDiscriminator(Discriminator):
    """Multi-period waveform discriminator (HiFi-GAN MPD; periods 2, 3, 5, 7, 11).

    Kong et al. 2020, "HiFi-GAN", section 2.2: each sub-discriminator folds the waveform by its
    period into a 2-D map [B, 1, S/p, p] (reflect-padding the end to a multiple of p) and applies
    (k, 1) convolutions with LeakyReLU(0.1) after every conv but the last.

    forward(real [B, 1, S], fake [B, 1, S]) → DiscriminatorOutput: per period, scores [B, -1] and the
    list of ``len(channels) + 1`` feature maps (the reference's ``y_d_rs, y_d_gs, fmap_rs, fmap_gs``).

    Args:
        periods: one sub-discriminator per period.
        channels: output widths of the convs of each sub-discriminator (the reference hard-codes [32, 128, 512, 1024, 1024]).
        kernel_size: time kernel of the convs.
        stride: time stride of all convs but the last.
    """

    def __init__(
        self,
        periods: list[int] = (2, 3, 5, 7, 11),
        channels: list[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, list(channels), kernel_size, stride) for p in periods)

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
