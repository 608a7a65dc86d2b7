"""The denoiser networks of the StyleTTS 2 style diffusion (Li et al. 2023, section 3.2.1).

A small transformer over the text context: the noisy style vector is repeated along the PL-BERT
sequence and concatenated to it, a noise-level (and, multispeaker, speaker-feature) mapping is added
before every block, and the mean over the sequence is projected back to the style width. These are
the reference's ``Modules/diffusion/modules.py`` ``Transformer1d`` / ``StyleTransformer1d`` (from
audio-diffusion-pytorch), restricted to what StyleTTS 2 uses: no relative positions, no
cross-attention. Parameter names follow the reference so its state dicts load key for key.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from tts_zoo_styletts2.layers import AdaLayerNorm


class AttentionBase(nn.Module):
    """Multi-head scaled dot-product attention on projected q, k, v, then the output projection.

    q [B, N, H·D], k, v [B, M, H·D] → [B, N, out_features]. The similarity is scaled after the
    matmul, as in the reference (same rounding).
    """

    def __init__(self, features: int, *, head_features: int, num_heads: int, out_features: Optional[int] = None):
        super().__init__()
        self.scale = head_features**-0.5
        self.num_heads = num_heads
        self.to_out = nn.Linear(head_features * num_heads, out_features or features)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, n, _ = q.shape
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))  # [B, H, *, D]
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class Attention(nn.Module):
    """Pre-norm self-attention; the norm is a LayerNorm, or an :class:`AdaLayerNorm` on the speaker
    features when ``style_dim`` is given (the reference's ``Attention`` / ``StyleAttention``).

    x [B, T, C] (+ s [B, style_dim]) → [B, T, C].
    """

    def __init__(self, features: int, *, head_features: int, num_heads: int, style_dim: Optional[int] = None):
        super().__init__()
        mid_features = head_features * num_heads
        if style_dim is None:
            self.norm, self.norm_context = nn.LayerNorm(features), nn.LayerNorm(features)
        else:
            self.norm, self.norm_context = AdaLayerNorm(style_dim, features), AdaLayerNorm(style_dim, features)
        self.to_q = nn.Linear(features, mid_features, bias=False)
        self.to_kv = nn.Linear(features, mid_features * 2, bias=False)
        self.attention = AttentionBase(features, head_features=head_features, num_heads=num_heads)

    def _norm(self, norm: nn.Module, x: Tensor, s: Optional[Tensor]) -> Tensor:
        return norm(x) if isinstance(norm, nn.LayerNorm) else norm(x, s)

    def forward(self, x: Tensor, s: Optional[Tensor] = None) -> Tensor:
        # Self-attention: the context is x itself, normalised by its own norm (reference order).
        x, context = self._norm(self.norm, x, s), self._norm(self.norm_context, x, s)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.attention(self.to_q(x), k, v)


def FeedForward(features: int, multiplier: int) -> nn.Sequential:  # noqa: N802 - reference name
    """Linear(C → multiplier·C), GELU, Linear(→ C) (keys ``0`` / ``2``)."""
    return nn.Sequential(
        nn.Linear(features, features * multiplier), nn.GELU(), nn.Linear(features * multiplier, features)
    )


class TransformerBlock(nn.Module):
    """Residual self-attention then residual feed-forward. x [B, T, C] (+ s) → [B, T, C]."""

    def __init__(self, features: int, *, num_heads: int, head_features: int, multiplier: int,
                 style_dim: Optional[int] = None):
        super().__init__()
        self.attention = Attention(features, head_features=head_features, num_heads=num_heads, style_dim=style_dim)
        self.feed_forward = FeedForward(features, multiplier)

    def forward(self, x: Tensor, s: Optional[Tensor] = None) -> Tensor:
        x = self.attention(x, s) + x
        return self.feed_forward(x) + x


class LearnedPositionalEmbedding(nn.Module):
    """Random-Fourier features of a continuous time: t [B] → [B, 1 + dim] = [t, sin 2πtw, cos 2πtw]."""

    def __init__(self, dim: int):
        super().__init__()
        assert dim % 2 == 0, "the time embedding width must be even"
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: Tensor) -> Tensor:
        t = t.unsqueeze(-1)
        freqs = t * self.weights.unsqueeze(0) * 2 * math.pi
        return torch.cat((t, freqs.sin(), freqs.cos()), dim=-1)


class FixedEmbedding(nn.Module):
    """A learned per-position table: the "unconditional" text embedding of classifier-free guidance.

    x [B, L, ·] → [B, L, features] (rows 0..L-1, the same for every item); L ≤ max_length.
    """

    def __init__(self, max_length: int, features: int):
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(max_length, features)

    def forward(self, x: Tensor) -> Tensor:
        batch, length = x.shape[:2]
        if length > self.max_length:
            raise ValueError(f"text of {length} tokens exceeds embedding_max_length {self.max_length}")
        rows = self.embedding(torch.arange(length, device=x.device))
        return rows.unsqueeze(0).expand(batch, -1, -1)


class _ChannelsFirst(nn.Module):
    """[B, T, C] → [B, C, T] (the reference's einops ``Rearrange`` at ``to_out.0``)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


class Transformer1d(nn.Module):
    """Single-speaker style denoiser network (the reference's ``Transformer1d``).

    forward(x [B, 1, channels], time [B], embedding [B, L, context_embedding_features],
    features [B, context_features] | None) → [B, 1, channels]. Each of the ``num_layers`` blocks
    works at width F = channels + context_embedding_features on [x repeated over L | embedding];
    the mapping MLP(time embedding (+ feature projection)) is added before every block; the output
    is a 1×1 conv of the mean over L. Padded text positions are attended to and averaged, as in the
    reference.

    Args:
        num_layers: Number of transformer blocks.
        channels: Width of the (noisy) style vector: 2 × style_dim.
        num_heads: Attention heads.
        head_features: Width of each attention head.
        multiplier: Feed-forward expansion factor.
        context_embedding_features: Width of the text context (the PL-BERT hidden size).
        context_features: Width of the speaker features added to the mapping (None: no features).
        embedding_max_length: Rows of the unconditional embedding table (512 in every reference model).
    """

    style_conditioned = False  # blocks normalise with AdaLayerNorm on the features

    def __init__(
        self,
        num_layers: int = 3,
        channels: int = 256,
        num_heads: int = 8,
        head_features: int = 64,
        multiplier: int = 2,
        context_embedding_features: int = 768,
        context_features: Optional[int] = None,
        embedding_max_length: int = 512,
    ):
        super().__init__()
        if self.style_conditioned and context_features is None:
            raise ValueError(f"{type(self).__name__} needs context_features (the speaker feature width)")
        features = channels + context_embedding_features
        style_dim = context_features if self.style_conditioned else None
        self.blocks = nn.ModuleList(
            TransformerBlock(features, num_heads=num_heads, head_features=head_features,
                             multiplier=multiplier, style_dim=style_dim)
            for _ in range(num_layers)
        )
        self.to_out = nn.Sequential(_ChannelsFirst(), nn.Conv1d(features, channels, kernel_size=1))
        self.to_mapping = nn.Sequential(
            nn.Linear(features, features), nn.GELU(), nn.Linear(features, features), nn.GELU()
        )
        self.to_time = nn.Sequential(
            nn.Sequential(LearnedPositionalEmbedding(channels), nn.Linear(channels + 1, features)), nn.GELU()
        )
        self.use_context_features = context_features is not None
        if self.use_context_features:
            self.to_features = nn.Sequential(nn.Linear(context_features, features), nn.GELU())
        self.fixed_embedding = FixedEmbedding(embedding_max_length, context_embedding_features)

    def get_mapping(self, time: Tensor, features: Optional[Tensor]) -> Tensor:
        """time [B] (+ features [B, context_features]) → mapping [B, F]."""
        items = [self.to_time(time)]
        if self.use_context_features:
            if features is None:
                raise ValueError("this denoiser is conditioned on speaker features; pass features")
            items.append(self.to_features(features))
        return self.to_mapping(torch.stack(items).sum(0))

    def forward(self, x: Tensor, time: Tensor, embedding: Tensor, features: Optional[Tensor] = None) -> Tensor:
        length = embedding.shape[1]
        mapping = self.get_mapping(time, features).unsqueeze(1).expand(-1, length, -1)
        h = torch.cat([x.expand(-1, length, -1), embedding], dim=-1)  # [B, L, F]
        style = features if self.style_conditioned else None
        for block in self.blocks:
            h = block(h + mapping, style)
        h = h.mean(dim=1, keepdim=True)  # [B, 1, F]
        return self.to_out(h).transpose(1, 2)  # [B, 1, channels]


class StyleTransformer1d(Transformer1d):
    """Multispeaker style denoiser network (the reference's ``StyleTransformer1d``).

    As :class:`Transformer1d`, but every attention normalises with an :class:`AdaLayerNorm` driven by
    the speaker features [B, context_features] (the reference style of the same speaker), which also
    enter the mapping. Same shapes and arguments; ``context_features`` is required.
    """

    style_conditioned = True
