"""The StyleTTS 2 prosody predictor (Li et al. 2023): a style-conditioned duration encoder, a
duration head, and F0 / energy heads on the aligned frames (the reference's ``ProsodyPredictor``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo import interfaces
from tts_zoo_styletts2.layers import AdaLayerNorm, AdainResBlk1d, packed_lstm


class DurationEncoder(nn.Module):
    """``nlayers`` × (BiLSTM, AdaLayerNorm) over [text features | style], re-appending the style
    after every norm (the reference's ``DurationEncoder``; its ``lstms`` list alternates the two).

    x [B, d_model, T], style [B, sty_dim], lengths [B], padding_mask [B, T] → [B, T, d_model + sty_dim],
    zero at padded positions.
    """

    def __init__(self, sty_dim: int, d_model: int, nlayers: int, dropout: float = 0.1):
        super().__init__()
        self.lstms = nn.ModuleList()
        for _ in range(nlayers):
            self.lstms.append(nn.LSTM(d_model + sty_dim, d_model // 2, 1, batch_first=True, bidirectional=True))
            self.lstms.append(AdaLayerNorm(sty_dim, d_model))
        self.dropout = dropout
        self.d_model = d_model
        self.sty_dim = sty_dim

    def forward(self, x: Tensor, style: Tensor, lengths: Tensor, padding_mask: Tensor) -> Tensor:
        mask = padding_mask.to(x.device).unsqueeze(-1)  # [B, T, 1]
        s = style.unsqueeze(1).expand(-1, x.shape[-1], -1)  # [B, T, S]
        x = torch.cat([x.transpose(1, 2), s], dim=-1).masked_fill(mask, 0.0)  # [B, T, C + S]
        for block in self.lstms:
            if isinstance(block, AdaLayerNorm):
                x = torch.cat([block(x, style), s], dim=-1).masked_fill(mask, 0.0)
            else:
                x = packed_lstm(block, x, lengths, total_length=mask.shape[1])
                x = F.dropout(x, p=self.dropout, training=self.training)
        return x


class LinearNorm(nn.Module):
    """A Linear under the reference's ``linear_layer`` key."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear_layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_layer(x)


class ProsodyPredictor(interfaces.DurationModel):
    """Style-conditioned duration, F0 and energy predictor (StyleTTS 2 prosody predictor).

    Li et al. 2023, StyleTTS 2 (section 3.2 and appendix): a :class:`DurationEncoder` over
    PL-BERT features + the prosodic style, a BiLSTM + Linear to ``max_dur`` duration bins (the
    expected duration is ``sigmoid(logits).sum(-1)`` in units of 2 mel frames); on the aligned
    frames a shared BiLSTM feeds two AdaIN residual branches (the 2nd block upsamples ×2) that end in
    1×1 convs to F0 and energy.

    predict_durations(features [B, d_hid, T], style [B, S], lengths [B], padding_mask [B, T])
    → (logits [B, T, max_dur], d [B, T, d_hid + S]);
    predict_f0_energy(aligned [B, d_hid + S, F], style [B, S]) → (F0 [B, 2F], N [B, 2F]);
    forward(features, style, lengths, alignment [B, T, F], padding_mask) → (logits, en [B, d_hid + S, F]).

    Args:
        style_dim: Size of the prosodic style vector.
        d_hid: Hidden width (the reference config's ``hidden_dim``).
        nlayers: Number of (BiLSTM, AdaLayerNorm) pairs in the duration encoder (``n_layer``).
        max_dur: Number of duration bins (the longest duration of one token, in 2-frame units).
        dropout: Dropout in the duration encoder and the AdaIN blocks (training only).
    """

    def __init__(self, style_dim: int = 128, d_hid: int = 512, nlayers: int = 3, max_dur: int = 50, dropout: float = 0.2):
        super().__init__()
        self.text_encoder = DurationEncoder(sty_dim=style_dim, d_model=d_hid, nlayers=nlayers, dropout=dropout)
        self.lstm = nn.LSTM(d_hid + style_dim, d_hid // 2, 1, batch_first=True, bidirectional=True)
        self.duration_proj = LinearNorm(d_hid, max_dur)
        self.shared = nn.LSTM(d_hid + style_dim, d_hid // 2, 1, batch_first=True, bidirectional=True)
        self.F0 = self._branch(d_hid, style_dim, dropout)
        self.N = self._branch(d_hid, style_dim, dropout)
        self.F0_proj = nn.Conv1d(d_hid // 2, 1, 1, 1, 0)
        self.N_proj = nn.Conv1d(d_hid // 2, 1, 1, 1, 0)

    @staticmethod
    def _branch(d_hid: int, style_dim: int, dropout: float) -> nn.ModuleList:
        return nn.ModuleList([
            AdainResBlk1d(d_hid, d_hid, style_dim, dropout_p=dropout),
            AdainResBlk1d(d_hid, d_hid // 2, style_dim, upsample="nearest", dropout_p=dropout),
            AdainResBlk1d(d_hid // 2, d_hid // 2, style_dim, dropout_p=dropout),
        ])

    def _duration_logits(self, d: Tensor, lengths: Tensor) -> Tensor:
        x = packed_lstm(self.lstm, d, lengths, total_length=d.shape[1])
        return self.duration_proj(F.dropout(x, 0.5, training=self.training))

    @torch.no_grad()
    def init_duration_prior(self, exceed_counts: Tensor, total: float) -> None:
        """Set the duration head's biases to the log-odds of the data's P(duration > k), k = 0 … max_dur−1,
        from ``exceed_counts`` [max_dur] (tokens lasting more than k units) out of ``total`` tokens.

        A fresh head starts every bin at sigmoid(0) = 0.5, i.e. max_dur/2 units per token; pulling all of
        them down to the data's 2-4 units is the first thing training does, and on a CPU budget it drives
        the LSTMs into saturation, after which the durations stay at their mean. With the prior in the
        biases the durations start at the data's distribution (data-dependent initialisation; not in
        the reference)."""
        p = (exceed_counts.float() / max(total, 1.0)).clamp(1e-3, 1 - 1e-3)
        self.duration_proj.linear_layer.bias.copy_(torch.log(p / (1 - p)).to(self.duration_proj.linear_layer.bias))

    def predict_durations(
        self, text_features: Tensor, style: Tensor, lengths: Tensor, padding_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        d = self.text_encoder(text_features, style, lengths, padding_mask)
        return self._duration_logits(d, lengths), d

    def forward(
        self, texts: Tensor, style: Tensor, text_lengths: Tensor, alignment: Tensor, m: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Training pass: duration logits [B, T, max_dur] and the encoder output spread over the
        frames by ``alignment`` [B, T, F] → en [B, d_hid + S, F]."""
        logits, d = self.predict_durations(texts, style, text_lengths, m)
        return logits, d.transpose(1, 2) @ alignment

    def predict_f0_energy(self, aligned: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        x, _ = self.shared(aligned.transpose(1, 2))
        x = x.transpose(1, 2)  # [B, d_hid, F]
        f0, n = x, x
        for block in self.F0:
            f0 = block(f0, style)
        for block in self.N:
            n = block(n, style)
        return self.F0_proj(f0).squeeze(1), self.N_proj(n).squeeze(1)
