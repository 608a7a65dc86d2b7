"""Stage-1 text-aligner losses of StyleTTS 2 (Li et al. 2023, 3.2.2; train_first.py after TMA_epoch).

The aligner is fine-tuned end to end with the decoder; two terms keep it an aligner:
``loss_s2s`` (the attention decoder must still read the text) and ``loss_mono`` (its soft attention
is pulled towards the hard monotonic path found by MAS).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tts_zoo.interfaces import Loss


class AlignerS2SLoss(Loss):
    """Aligner sequence-to-sequence loss: token cross-entropy of the attention decoder.

    mean over items i of CE(s2s_logits[i, :n_i], tokens[i, :n_i]); the decoder's step t (step 0 is
    fed SOS) predicts token t, so the first n_i of its T+1 steps are scored.
    forward(s2s_logits [B, T+1, n_token], tokens [B, T], text_lengths [B]) → scalar.
    """

    def forward(self, s2s_logits: Tensor, tokens: Tensor, text_lengths: Tensor) -> Tensor:
        total = s2s_logits.new_zeros(())
        for logits, text, n in zip(s2s_logits, tokens, text_lengths.tolist()):
            total = total + F.cross_entropy(logits[:n], text[:n])
        return total / tokens.size(0)


class AlignerMonoLoss(Loss):
    """Aligner monotonic loss: ``scale`` × L1 between the soft attention and its MAS path.

    forward(attention [B, T, F/2], path [B, T, F/2]) → scalar (the stage-1 attention, zero outside
    the lengths, mean over all entries).

    Args:
        scale: Weight inside the term (the reference multiplies the L1 by 10).
    """

    def __init__(self, scale: float = 10.0):
        super().__init__()
        self.scale = scale

    def forward(self, attention: Tensor, path: Tensor) -> Tensor:
        return F.l1_loss(attention, path) * self.scale
