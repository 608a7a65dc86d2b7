"""The decoder body shared by StyleTTS 2's HiFi-GAN and iSTFTNet decoders (Li et al. 2023).

The body turns text-aligned features, F0 and energy into the generator's input: F0 and energy are
halved in rate by strided convs, then an encoder block and four decoder blocks (AdaIN residual
blocks conditioned on the acoustic style) re-inject the aligned features, F0 and energy; the last
block upsamples ×2 back to the F0 rate. A subclass adds ``self.generator`` (the waveform generator,
``generator(x [B, C, 2F], style [B, S], f0 [B, 2F]) → [B, 1, 600·F]`` at the official rates).

Also here: the Snake + AdaIN HiFi-GAN residual block both generators use.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.interfaces import Vocoder

from ..layers import AdaIN1d, AdainResBlk1d, current_weight, remove_weight_norm, weight_norm


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 dilated conv."""
    return int((kernel_size * dilation - dilation) / 2)


def snake(x: Tensor, alpha: Tensor) -> Tensor:
    """Snake activation x + sin²(αx)/α (Ziyin et al. 2020), in the reference's op order."""
    return x + (1 / alpha) * (torch.sin(alpha * x) ** 2)


# Inference fast path (autograd off). The generators run long chains of element-wise ops on
# [B, C, samples] maps (AdaIN's affine, then Snake: 7 full passes over memory, each allocating a new
# map). Here they run in place, one cache-sized block of time steps at a time: the same float ops
# on the same values (x·y = y·x and x + y = y + x exactly in IEEE arithmetic), so the same numbers,
# at a fraction of the memory traffic.
#
# On CPU the fast path also stores the generators' maps time-major ("channels-last": a [B, C, T]
# view of [B, T, C] memory) and runs their convolutions as 2-D channels-last convolutions, which
# oneDNN computes without reordering its input and output at every call: 2.0× faster for a
# 128-channel conv over 6.8 s of audio (k = 11, dilation 5) and 2.8× for the transposed upsampler at
# 2 threads, and 6–15× in bfloat16 on AMX CPUs. The sums then run in another order, so the output
# moves in its last bits: official widths, random weights, max |Δ| 5e-6 (iSTFTNet) and 1.4e-5
# (HiFi-GAN) on waveforms of peak ~1, as far from a float64 run as the reference ops are
# (test_decoders holds both to that, and to the reference fixtures within 1e-4).
_BLOCK_ELEMENTS = 1 << 18  # 1 MiB of float32: a block's temporaries stay in L2
FAST_PATH = True  # False: always the reference's op sequence (benchmarks compare the two)
TIME_MAJOR = True  # False: the fast path keeps [B, C, T] memory on CPU too


def use_time_major(x: Tensor) -> bool:
    """Whether a generator's fast path stores its maps time-major (CPU; see ``conv``)."""
    return TIME_MAJOR and fast_path() and x.device.type == "cpu"


def fast_path() -> bool:
    """True when autograd records nothing (inference): in-place ops are then safe."""
    return FAST_PATH and not torch.is_grad_enabled()


def channels_last(x: Tensor) -> Tensor:
    """[B, C, T] → the same values stored time-major (a [B, C, T] view of [B, T, C] memory)."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def conv(module: nn.Conv1d | nn.ConvTranspose1d, x: Tensor, time_major: bool) -> Tensor:
    """``module(x)``, or with ``time_major`` a 2-D channels-last convolution over [B, C, 1, T] whose
    output comes back channels-last. A module whose weights are bfloat16
    (``prepare_for_inference(bf16=True)``) gets its input cast to bfloat16 and returns float32."""
    if not time_major:
        return module(x)
    weight, bias = current_weight(module).unsqueeze(2), module.bias
    x4 = x.unsqueeze(2).to(weight.dtype).contiguous(memory_format=torch.channels_last)
    stride, padding, dilation = (1, module.stride[0]), (0, module.padding[0]), (1, module.dilation[0])
    if isinstance(module, nn.ConvTranspose1d):
        out = F.conv_transpose2d(x4, weight, bias, stride, padding, (0, module.output_padding[0]), module.groups, dilation)
    else:
        out = F.conv2d(x4, weight, bias, stride, padding, dilation, module.groups)
    return out.contiguous(memory_format=torch.channels_last).squeeze(2).to(x.dtype)  # a no-op but for C_out = 1


def _blocks(x: Tensor) -> list[Tensor]:
    # Multiples of 64 steps keep vectorised kernels on full vectors (no scalar tails mid-row).
    step = max(64, _BLOCK_ELEMENTS // max(1, x.shape[0] * x.shape[1]) // 64 * 64)
    return [x[..., t : t + step] for t in range(0, x.shape[-1], step)]


def snake_(x: Tensor, alpha: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
    """In place: ``x ← snake(γ·x + β, α)`` (the affine part only when ``gamma`` is given), blockwise."""
    inv_alpha = 1 / alpha
    blocks = _blocks(x)
    scratch = torch.empty_like(blocks[0])  # one temporary for the full blocks: less allocator churn
    for y in blocks:
        if gamma is not None:
            y.mul_(gamma).add_(beta)
        # a dense temporary, as y * alpha would allocate (a strided one would vectorise its rows' tails otherwise)
        w = torch.mul(y, alpha, out=scratch if y.shape == scratch.shape else torch.empty_like(y))
        y.add_(w.sin_().pow_(2).mul_(inv_alpha))
    return x


def mrf(blocks: Sequence[nn.Module], x: Tensor, s: Tensor, fast: bool) -> Tensor:
    """HiFi-GAN's multi-receptive-field fusion: the mean of the ResBlocks' outputs on ``x``."""
    xs = blocks[0](x, s)
    for block in blocks[1:]:
        xs = xs.add_(block(x, s)) if fast else xs + block(x, s)
    return xs.div_(len(blocks)) if fast else xs / len(blocks)


def adain_snake(norm: AdaIN1d, x: Tensor, s: Tensor, alpha: Tensor, time_major: bool) -> Tensor:
    """``snake(norm(x, s), alpha)`` for inference: instance norm, then the affine and Snake in place."""
    gamma, beta = norm.fc(s).unsqueeze(-1).chunk(2, dim=1)
    if not time_major:
        return snake_(norm.norm(x), alpha, 1 + gamma, beta)
    # Time-major x: mean, then the variance of the centred map (two passes, as accurate as torch's
    # instance norm; its channels-last batch norm sums x and x² in one pass, with 20-70x the error),
    # the affine folded into Snake's in-place pass.
    n = x.shape[-1]
    centred = x - x.sum(-1, keepdim=True) / n
    blocks = _blocks(centred)
    scratch = torch.empty_like(blocks[0])  # in cache, reused
    squares = sum(torch.square(b, out=scratch if b.shape == scratch.shape else None).sum(-1, keepdim=True) for b in blocks)
    scale = (1 + gamma) * torch.rsqrt(squares / n + norm.norm.eps)
    return snake_(centred, alpha, scale, beta)


class AdaINResBlock1(nn.Module):
    """HiFi-GAN ResBlock1 with AdaIN before each conv and Snake activations (StyleTTS 2).

    For each dilation d: x = x + conv2(snake(AdaIN2(conv1_d(snake(AdaIN1(x, s))), s))).
    x [B, C, T], s [B, style_dim] → [B, C, T].
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5), style_dim: int = 64):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1)))
            for _ in dilation
        )
        self.adain1 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilation)
        self.adain2 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilation)
        self.alpha1 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilation)
        self.alpha2 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilation)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        fast, tm = fast_path(), use_time_major(x)
        for c1, c2, n1, n2, a1, a2 in zip(self.convs1, self.convs2, self.adain1, self.adain2, self.alpha1, self.alpha2):
            if fast:
                xt = conv(c2, adain_snake(n2, conv(c1, adain_snake(n1, x, s, a1, tm), tm), s, a2, tm), tm)
                x = xt.add_(x)
                continue
            xt = c1(snake(n1(x, s), a1))
            xt = c2(snake(n2(xt, s), a2))
            x = xt + x
        return x


class StyleTTS2Decoder(Vocoder):
    """Decoder body (``encode``, ``decode.0-3``, ``F0_conv``, ``N_conv``, ``asr_res``); subclasses
    add ``generator``.

    forward(aligned [B, dim_in, F], f0 [B, 2F], energy [B, 2F], style [B, style_dim])
    → [B, 1, samples_per_frame·F] (600 at the official rates).
    In train mode F0 and energy are first smoothed by a random box filter (width drawn with Python's
    ``random``: F0 ∈ {none, 3, 7}, energy ∈ {none, 3, 7, 15}), as in the reference.
    """

    generator: nn.Module

    def __init__(
        self,
        dim_in: int,
        style_dim: int,
        hidden_dim: int,
        asr_res_dim: int,
        upsample_initial_channel: int,
        mel_head_bins: int = 0,
    ):
        super().__init__()
        self.encode = AdainResBlk1d(dim_in + 2, hidden_dim, style_dim)
        block_in = hidden_dim + 2 + asr_res_dim
        self.decode = nn.ModuleList(
            [
                AdainResBlk1d(block_in, hidden_dim, style_dim),
                AdainResBlk1d(block_in, hidden_dim, style_dim),
                AdainResBlk1d(block_in, hidden_dim, style_dim),
                AdainResBlk1d(block_in, upsample_initial_channel, style_dim, upsample="nearest"),
            ]
        )
        self.F0_conv = weight_norm(nn.Conv1d(1, 1, kernel_size=3, stride=2, groups=1, padding=1))
        self.N_conv = weight_norm(nn.Conv1d(1, 1, kernel_size=3, stride=2, groups=1, padding=1))
        self.asr_res = nn.Sequential(weight_norm(nn.Conv1d(dim_in, asr_res_dim, kernel_size=1)))
        # Training-only: a linear read-out of the log-mel from the generator input (see mel_from_body).
        self.mel_head = nn.Conv1d(upsample_initial_channel, mel_head_bins, kernel_size=1) if mel_head_bins else None

    @staticmethod
    def _box_smooth(x: Tensor, width: int) -> Tensor:
        """Moving average of odd ``width`` along time, zero-padded: [B, T] → [B, T]."""
        kernel = torch.ones(1, 1, width, dtype=x.dtype, device=x.device)
        return F.conv1d(x.unsqueeze(1), kernel, padding=width // 2).squeeze(1) / width

    def generator_input(self, aligned: Tensor, f0: Tensor, energy: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """The body: → (generator input [B, upsample_initial_channel, 2F], F0 curve [B, 2F] for the
        source; the F0 curve is smoothed in train mode)."""
        if self.training:
            f0_width = (0, 3, 7)[random.randint(0, 2)]
            energy_width = (0, 3, 7, 15)[random.randint(0, 3)]
            if f0_width:
                f0 = self._box_smooth(f0, f0_width)
            if energy_width:
                energy = self._box_smooth(energy, energy_width)

        f0_down = self.F0_conv(f0.unsqueeze(1))
        energy_down = self.N_conv(energy.unsqueeze(1))
        x = self.encode(torch.cat([aligned, f0_down, energy_down], dim=1), style)
        asr_res = self.asr_res(aligned)
        residual = True
        for block in self.decode:
            # The features are re-injected until (and including) the upsampling block.
            if residual:
                x = torch.cat([x, asr_res, f0_down, energy_down], dim=1)
            x = block(x, style)
            if block.upsample_type != "none":
                residual = False
        return x, f0

    def mel_from_body(self, x: Tensor) -> Tensor:
        """The generator input ``x`` [B, upsample_initial_channel, 2F] → normalised log-mel [B, mel_head_bins, 2F]
        through the 1×1 ``mel_head`` (``mel_head_bins`` > 0).

        Not in the reference: an auxiliary target for stage 1 (``lambda_body_mel``). Learnt through the
        waveform generator alone, the body's content is slow to come (a demo-sized stage 1, 1,140 steps:
        speech decoded teacher-forced from it scores Whisper WER ~0.6); read out linearly and trained on
        the mel directly, the same body reaches WER 0.14 (Griffin-Lim of the read-out) in the same steps
        at a fifth of the cost, and the generator then renders a mel-like input, as a vocoder does."""
        if self.mel_head is None:
            raise ValueError("the decoder has no mel head: build it with mel_head_bins > 0 (e.g. 80)")
        return self.mel_head(x)

    def forward(self, aligned: Tensor, f0: Tensor, energy: Tensor, style: Tensor) -> Tensor:
        x, f0 = self.generator_input(aligned, f0, energy, style)
        return self.generator(x, style, f0)

    def remove_weight_norm(self) -> None:
        remove_weight_norm(self)
