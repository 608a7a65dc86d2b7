"""Multi-period discriminator (HiFi-GAN, Kong et al. 2020), as StyleTTS 2 uses it.

Parameter names follow the reference (``Modules/discriminators.py``): ``discriminators.{i}.convs.{j}``
and ``discriminators.{i}.conv_post``, old-style weight norm (``weight_g`` / ``weight_v``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.interfaces import Discriminator, DiscriminatorOutput
from tts_zoo_styletts2.layers import current_weight, weight_norm

LRELU_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """One period-p sub-discriminator: the wave folded to [B, 1, S/p, p], then (k, 1) 2-D convs.

    x [B, 1, S] → (scores [B, -1], feature maps [B, C, S', p]: one per conv, the last one before flattening).

    A (k, 1) kernel never mixes the p columns, so each conv runs as a 1-D conv over the B·p columns
    as a batch of sequences: the same sums, but oneDNN's 2-D kernels run a width-p image at 40–140
    GFLOP/s where the 1-D ones run at ~155 (2 cores; forward 1.34 → 0.86 s and forward + backward
    3.8 → 3.1 s per official-width wave of 2 × 2.3 s). Feature maps and scores are handed out in the
    reference's [B, C, S', p] layout (views: nothing is copied). The weights keep their 2-D shape.
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
        p = self.period
        if t % p:  # reflect-pad the end to a multiple of the period
            x = F.pad(x, (0, p - t % p), mode="reflect")
        x = x.view(b, c, -1, p).permute(0, 3, 1, 2).reshape(b * p, c, -1)  # column j of item i → sequence i·p + j

        def as_image(y: Tensor) -> Tensor:  # [B·p, C, S'] → the reference's [B, C, S', p] (a view)
            return y.view(b, p, *y.shape[1:]).permute(0, 2, 3, 1)

        fmap = []
        for conv in self.convs:
            # in place: the conv's output is saved by no one, and LeakyReLU's backward can read the sign
            # from its result, so the graph keeps one map per layer instead of two (the same numbers)
            x = F.leaky_relu(column_conv(conv, x), LRELU_SLOPE, inplace=True)
            fmap.append(as_image(x))
        x = as_image(column_conv(self.conv_post, x))
        fmap.append(x)
        return x.flatten(1), fmap


def column_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A (k, 1) ``conv`` (weight-normed) over sequences x [N, C_in, S] → [N, C_out, S']."""
    return F.conv1d(x, current_weight(conv).squeeze(-1), conv.bias, conv.stride[0], conv.padding[0])


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
