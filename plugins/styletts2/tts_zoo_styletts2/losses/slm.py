"""Speech-language-model (WavLM) losses of StyleTTS 2 (the reference's ``WavLMLoss``).

They take what :class:`tts_zoo_styletts2.discriminators.wavlm.WavLMDiscriminator` computes: hidden
states (``hidden_states``, target states under ``torch.no_grad()``) and head scores (``head`` /
``score``, or its ``forward(real, fake)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tts_zoo.interfaces import Loss


class WavLMFeatureLoss(Loss):
    """SLM feature matching: Σ over WavLM hidden states of mean|h(y) - h(ŷ)|.

    Li et al. 2023 (StyleTTS 2), eq. 6 ("SLM feature matching"); the reference's ``WavLMLoss.forward``.

    forward(real_states, fake_states: sequences (or stacked tensors) of states [B, frames, hidden])
    → scalar.
    """

    def forward(self, real_states: Sequence[Tensor] | Tensor, fake_states: Sequence[Tensor] | Tensor) -> Tensor:
        return sum(torch.mean(torch.abs(r - g)) for r, g in zip(real_states, fake_states))


class WavLMGeneratorLoss(Loss):
    """SLM adversarial loss of the generator (LSGAN): mean((1 - D_slm(ŷ))²).

    Li et al. 2023 (StyleTTS 2), section 3.2.2; the reference's ``WavLMLoss.generator``.

    forward(fake_scores [B, frames]) → scalar (scores of the generated wave, with gradient).
    """

    def forward(self, fake_scores: Tensor) -> Tensor:
        return torch.mean((1 - fake_scores) ** 2)


class WavLMDiscriminatorLoss(Loss):
    """SLM discriminator loss (LSGAN): mean((1 - D_slm(y))²) + mean(D_slm(ŷ)²).

    Li et al. 2023 (StyleTTS 2), section 3.2.2; the reference's ``WavLMLoss.discriminator`` (hidden
    states computed without gradient, the head trained).

    forward(real_scores [B, frames], fake_scores [B', frames']) → scalar.
    """

    def forward(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return torch.mean((1 - real_scores) ** 2) + torch.mean(fake_scores**2)
