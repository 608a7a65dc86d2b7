"""The acoustic text encoder of StyleTTS 2 (Li et al. 2023): token embedding, a stack of 1-D convs,
then a bidirectional LSTM (the reference's ``models.TextEncoder``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo import interfaces
from tts_zoo_styletts2.layers import packed_lstm, weight_norm


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] map, with the reference's parameter names
    ``gamma`` / ``beta`` (its ``models.LayerNorm``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class TextEncoder(interfaces.TextEncoder):
    """CNN + BiLSTM text encoder: token ids → acoustic text features (StyleTTS 2).

    Li et al. 2023, "StyleTTS 2", section 3 / appendix: embedding → ``depth`` × (weight-normed
    Conv1d, channel LayerNorm, LeakyReLU 0.2, dropout) → BiLSTM (``channels / 2`` per direction).
    Padded positions are zeroed after the embedding, after every conv block and at the output; the
    LSTM runs on packed sequences so each item's reverse pass starts at its own last token.

    tokens [B, T] long, lengths [B], padding_mask [B, T] bool (True = padding) → [B, channels, T].

    Args:
        channels: Embedding, conv and output width (the reference config's ``hidden_dim``).
        kernel_size: Kernel size of the convolutions (odd; "same" padding).
        depth: Number of conv blocks (the reference config's ``n_layer``).
        n_symbols: Size of the token table (the reference config's ``n_token``).
        dropout: Dropout after each conv block (training only; hard-wired 0.2 in the reference).
    """

    def __init__(
        self,
        channels: int = 512,
        kernel_size: int = 5,
        depth: int = 3,
        n_symbols: int = 178,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels)
        padding = (kernel_size - 1) // 2
        # Sequential (conv, norm, activation, dropout) keeps the reference's keys: cnn.{i}.0 / cnn.{i}.1.
        self.cnn = nn.ModuleList(
            nn.Sequential(
                weight_norm(nn.Conv1d(channels, channels, kernel_size=kernel_size, padding=padding)),
                ChannelLayerNorm(channels),
                nn.LeakyReLU(0.2),
                nn.Dropout(dropout),
            )
            for _ in range(depth)
        )
        self.lstm = nn.LSTM(channels, channels // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, tokens: Tensor, lengths: Tensor, padding_mask: Tensor) -> Tensor:
        mask = padding_mask.to(tokens.device).unsqueeze(1)  # [B, 1, T]
        x = self.embedding(tokens).transpose(1, 2).masked_fill(mask, 0.0)  # [B, C, T]
        for block in self.cnn:
            x = block(x).masked_fill(mask, 0.0)
        x = packed_lstm(self.lstm, x.transpose(1, 2), lengths, total_length=tokens.shape[1])
        return x.transpose(1, 2).masked_fill(mask, 0.0)
