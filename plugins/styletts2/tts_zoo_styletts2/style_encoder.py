"""The StyleTTS 2 style encoder (Li et al. 2023; from StyleTTS, Li et al. 2022): a spectral-normed
residual CNN over a reference mel. StyleTTS 2 uses two: the acoustic ``style_encoder`` and the
prosodic ``predictor_encoder``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo import interfaces


def spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) with the reference's keys (``weight_orig``,
    ``weight_u``, ``weight_v``): in eval the stored u, v give sigma = u·(W v) without a power
    iteration; in train mode one iteration per forward updates u, v in place."""
    return nn.utils.spectral_norm(module)


def _halve(x: Tensor) -> Tensor:
    """2×2 average pooling; an odd time axis first repeats its last frame (rounds up, as the
    strided conv of the residual path does)."""
    if x.shape[-1] % 2 != 0:
        x = torch.cat([x, x[..., -1:]], dim=-1)
    return F.avg_pool2d(x, 2)


class LearnedDownSample(nn.Module):
    """Depthwise 3×3 conv with stride 2 (the residual path's learned ×2 down-sampling)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ResBlk(nn.Module):
    """Pre-activation residual block that halves both axes (the reference's ``ResBlk`` with
    ``downsample='half'``, no normalisation). x [B, dim_in, H, W] → [B, dim_out, ⌈H/2⌉, ⌈W/2⌉]."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.actv = nn.LeakyReLU(0.2)
        self.downsample_res = LearnedDownSample(dim_in)
        self.learned_sc = dim_in != dim_out
        self.conv1 = spectral_norm(nn.Conv2d(dim_in, dim_in, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(dim_in, dim_out, 3, 1, 1))
        if self.learned_sc:
            self.conv1x1 = spectral_norm(nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = _halve(self.conv1x1(x) if self.learned_sc else x)
        h = self.conv1(self.actv(x))
        h = self.conv2(self.actv(self.downsample_res(h)))
        return (shortcut + h) / math.sqrt(2)  # keeps unit variance


class StyleEncoder(interfaces.StyleEncoder):
    """Spectral-normed residual CNN: reference mel → style vector (StyleTTS 2 style encoder).

    Li et al. 2023 (StyleTTS 2), after StyleTTS (Li et al. 2022): a 3×3 conv to ``dim_in``
    channels, ``num_blocks`` down-sampling residual blocks (widths doubling, capped at
    ``max_conv_dim``), LeakyReLU, a 5×5 valid conv, global average pooling, LeakyReLU and a Linear
    to ``style_dim``. Needs ≥ 65 mel frames with 4 blocks (the 5×5 conv after 4 halvings).

    mel [B, 1, n_mels, F] → [B, style_dim].

    Args:
        dim_in: Channels of the first conv (the reference config's ``dim_in``).
        style_dim: Size of the style vector.
        max_conv_dim: Channel cap of the residual blocks (the reference passes ``hidden_dim``).
        num_blocks: Number of down-sampling residual blocks.
    """

    def __init__(self, dim_in: int = 64, style_dim: int = 128, max_conv_dim: int = 512, num_blocks: int = 4):
        super().__init__()
        self.style_dim = style_dim
        # One Sequential so the keys match the reference: shared.0 conv, shared.1..N blocks, then
        # activation, 5×5 conv, pooling, activation.
        blocks: list[nn.Module] = [spectral_norm(nn.Conv2d(1, dim_in, 3, 1, 1))]
        dim_out = dim_in
        for _ in range(num_blocks):
            dim_out = min(dim_in * 2, max_conv_dim)
            blocks.append(ResBlk(dim_in, dim_out))
            dim_in = dim_out
        blocks += [
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(dim_out, dim_out, 5, 1, 0)),
            nn.AdaptiveAvgPool2d(1),
            nn.LeakyReLU(0.2),
        ]
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.Linear(dim_out, style_dim)

    def forward(self, mel: Tensor) -> Tensor:
        h = self.shared(mel)
        return self.unshared(h.flatten(1))
