"""Stage-2 prosody losses of StyleTTS 2: durations, F0 and energy reconstruction, style reconstruction.

The reference computes these inline in ``train_second.py``; the formulas are kept exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_zoo.interfaces import Loss


def duration_targets(logits: Tensor, durations: Tensor) -> Tensor:
    """The ordinal target of a token with duration d: its first d of ``max_dur`` bins are 1.

    logits [n, max_dur], durations [n] → [n, max_dur] (dtype of ``logits``).
    """
    bins = torch.arange(logits.shape[-1], device=logits.device)
    return (bins < durations.long().unsqueeze(-1)).to(logits.dtype)


class DurationBCELoss(Loss):
    """Duration classification loss: binary cross-entropy of every duration bin, mean per item.

    Li et al. 2023 (StyleTTS 2), section 3.2.1 (L_dur): the predictor emits ``max_dur`` logits per
    token whose sigmoids sum to the duration; the target of a token lasting d units has its first d
    bins set. Per item i (text length n_i): BCEWithLogits over the n_i·max_dur bins; averaged over B.

    forward(logits [B, T, max_dur], durations [B, T] (units of 2 mel frames), lengths [B]) → scalar.
    """

    def forward(self, logits: Tensor, durations: Tensor, lengths: Tensor) -> Tensor:
        loss = 0
        for d, t, n in zip(logits, durations, lengths.tolist()):
            d = d[:n]
            loss = loss + F.binary_cross_entropy_with_logits(d.flatten(), duration_targets(d, t[:n]).flatten())
        return loss / logits.shape[0]


class DurationL1Loss(Loss):
    """Duration regression loss: L1 between Σ sigmoid(logits) and the duration, first/last token excluded.

    Li et al. 2023 (StyleTTS 2), section 3.2.1; per item (text length n) the mean |d̂ - d| over tokens
    1 … n-2 (the padding tokens at both ends are left out), averaged over B. Durations are truncated to
    integers first, as the reference does.

    forward(logits [B, T, max_dur], durations [B, T], lengths [B]) → scalar.
    """

    def forward(self, logits: Tensor, durations: Tensor, lengths: Tensor) -> Tensor:
        loss = 0
        for d, t, n in zip(logits, durations, lengths.tolist()):
            predicted = torch.sigmoid(d[:n]).sum(-1)
            target = t[:n].long().to(predicted.dtype)
            loss = loss + F.l1_loss(predicted[1 : n - 1], target[1 : n - 1])
        return loss / logits.shape[0]


class F0ReconstructionLoss(Loss):
    """F0 reconstruction: smooth-L1(F0_real, F0_pred) / 10 (Li et al. 2023, StyleTTS 2, L_f0).

    forward(real [B, F], predicted [B, F]) → scalar (F0 in Hz, from the pitch extractor).

    Args:
        divisor: the reference divides the smooth-L1 loss by 10.
    """

    def __init__(self, divisor: float = 10.0):
        super().__init__()
        self.divisor = divisor

    def forward(self, real: Tensor, predicted: Tensor) -> Tensor:
        return F.smooth_l1_loss(real, predicted) / self.divisor


class EnergyReconstructionLoss(Loss):
    """Energy reconstruction: smooth-L1(N_real, N_pred) (Li et al. 2023, StyleTTS 2, L_n).

    forward(real [B, F], predicted [B, F]) → scalar; N = log ||mel||_2 per frame (``tts_zoo.audio.log_norm``).
    """

    def forward(self, real: Tensor, predicted: Tensor) -> Tensor:
        return F.smooth_l1_loss(real, predicted)


class StyleReconstructionLoss(Loss):
    """Style reconstruction: L1 between the diffusion-sampled style and the target style.

    Li et al. 2023 (StyleTTS 2), section 3.2.1 (L_sty); the target is detached.

    forward(predicted [B, 2·style_dim], target [B, 2·style_dim]) → scalar.
    """

    def forward(self, predicted: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(predicted, target.detach())
