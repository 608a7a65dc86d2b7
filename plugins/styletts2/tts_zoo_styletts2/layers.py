"""Building blocks shared by the text encoder, the prosody predictor and the decoders (Li et al. 2023,
StyleTTS 2).

Parameter names follow the reference implementation so that its checkpoints load key for key.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.weight_norm import WeightNorm


def weight_norm(module: nn.Module) -> nn.Module:
    """Old-style weight norm (``weight_g`` / ``weight_v`` keys, as in the reference's checkpoints).

    torch deprecates this API in favour of parametrizations, whose keys differ; the reference's
    files use these names, so we keep them and silence the deprecation here, in one place.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


def remove_weight_norm(module: nn.Module) -> None:
    """Fold every old-style weight norm below ``module`` into a plain weight (for inference).

    The same numbers as ``nn.utils.remove_weight_norm`` (its own ``compute_weight``), written into
    ``weight_v``'s memory: folding a loaded model allocates nothing that outlives one layer.
    """
    for child in module.modules():
        for key, hook in list(child._forward_pre_hooks.items()):
            if isinstance(hook, WeightNorm):
                v = child._parameters[hook.name + "_v"]
                with torch.no_grad():
                    v.copy_(hook.compute_weight(child))
                delattr(child, hook.name)  # the weight computed at the last call
                del child._parameters[hook.name + "_g"], child._parameters[hook.name + "_v"], child._forward_pre_hooks[key]
                setattr(child, hook.name, nn.Parameter(v.detach(), requires_grad=v.requires_grad))


def current_weight(module: nn.Module) -> Tensor:
    """``module.weight`` as its next call would use it: computed from ``weight_g`` / ``weight_v`` when
    weight norm is not folded (its hook only refreshes ``module.weight`` when the module is called)."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm):
            return hook.compute_weight(module)
    return module.weight


def packed_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor, total_length: int) -> Tensor:
    """Run a batch-first ``lstm`` over the valid frames of each item only (packed sequence), so the
    reverse direction of a padded item starts at its last real frame, as in the reference.

    x [B, T, C_in], lengths [B] → [B, total_length, C_out], zero beyond each length.
    """
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=total_length)
    return out


class AdaIN1d(nn.Module):
    """Adaptive instance norm: ``(1 + γ(s)) · InstanceNorm(x) + β(s)``.

    x [B, C, T], s [B, style_dim] → [B, C, T].
    """

    def __init__(self, style_dim: int, num_features: int):
        super().__init__()
        self.norm = nn.InstanceNorm1d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(-1).chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class UpSample1d(nn.Module):
    """Nearest-neighbour ×2 upsampling along time, or identity (``layer_type='none'``)."""

    def __init__(self, layer_type: str = "none"):
        super().__init__()
        self.layer_type = layer_type

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_type == "none":
            return x
        return F.interpolate(x, scale_factor=2, mode="nearest")


class AdainResBlk1d(nn.Module):
    """Style-conditioned residual block: two weight-normed convs with AdaIN, optional ×2 upsampling
    (a depthwise transposed conv ``pool`` on the residual path, nearest on the shortcut).

    x [B, dim_in, T], s [B, style_dim] → [B, dim_out, T] (or 2T with ``upsample``).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        style_dim: int = 64,
        upsample: str = "none",
        dropout_p: float = 0.0,
    ):
        super().__init__()
        self.actv = nn.LeakyReLU(0.2)
        self.upsample_type = upsample
        self.upsample = UpSample1d(upsample)
        self.learned_sc = dim_in != dim_out
        self.dropout = nn.Dropout(dropout_p)
        self.conv1 = weight_norm(nn.Conv1d(dim_in, dim_out, 3, 1, 1))
        self.conv2 = weight_norm(nn.Conv1d(dim_out, dim_out, 3, 1, 1))
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = weight_norm(nn.Conv1d(dim_in, dim_out, 1, 1, 0, bias=False))
        if upsample == "none":
            self.pool = nn.Identity()
        else:
            self.pool = weight_norm(
                nn.ConvTranspose1d(dim_in, dim_in, kernel_size=3, stride=2, groups=dim_in, padding=1, output_padding=1)
            )

    def _shortcut(self, x: Tensor) -> Tensor:
        x = self.upsample(x)
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def _residual(self, x: Tensor, s: Tensor) -> Tensor:
        x = self.actv(self.norm1(x, s))
        x = self.pool(x)
        x = self.conv1(self.dropout(x))
        x = self.actv(self.norm2(x, s))
        return self.conv2(self.dropout(x))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return (self._residual(x, s) + self._shortcut(x)) / math.sqrt(2)


class AdaLayerNorm(nn.Module):
    """Style-adaptive LayerNorm over the last axis: ``(1 + γ(s)) · LayerNorm(x) + β(s)``, no learned
    affine of its own (key ``fc``). Used by the duration encoder and the diffusion transformer.

    x [B, T, C], s [B, style_dim] → [B, T, C].
    """

    def __init__(self, style_dim: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.fc = nn.Linear(style_dim, channels * 2)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, C] each
        return (1 + gamma) * F.layer_norm(x, (self.channels,), eps=self.eps) + beta
