"""GAN objectives of StyleTTS 2's decoder training: LSGAN, feature matching and TPRLS.

The functions take the per-sub-discriminator lists of a :class:`tts_zoo.interfaces.DiscriminatorOutput`
(scores [B, -1], feature maps of any shape); the two Loss classes sum them over several
discriminators (StyleTTS 2: MPD and MSD).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_zoo.interfaces import DiscriminatorOutput, Loss


def generator_lsgan_loss(fake_scores: Sequence[Tensor]) -> Tensor:
    """LSGAN generator term (Mao et al. 2017): Σ_d mean((1 - D_d(ŷ))²)."""
    return sum(torch.mean((1 - dg) ** 2) for dg in fake_scores)


def discriminator_lsgan_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor]) -> Tensor:
    """LSGAN discriminator term: Σ_d mean((1 - D_d(y))²) + mean(D_d(ŷ)²)."""
    return sum(torch.mean((1 - dr) ** 2) + torch.mean(dg**2) for dr, dg in zip(real_scores, fake_scores))


def feature_matching_loss(real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]) -> Tensor:
    """HiFi-GAN feature matching (Kong et al. 2020): 2 · Σ over every map of mean|f(y) - f(ŷ)|."""
    loss = sum(torch.mean(torch.abs(r - g)) for fr, fg in zip(real_features, fake_features) for r, g in zip(fr, fg))
    return loss * 2


def _tprls(dr: Tensor, dg: Tensor, tau: float) -> Tensor:
    """One sub-discriminator's truncated pointwise relativistic LS term, min(τ, L_rel)."""
    diff = dr - dg
    m = torch.median(diff)  # the lower middle value for an even count, as torch defines it
    below = ((diff - m) ** 2)[dr < dg + m]
    # The reference takes the mean of an empty selection (NaN); its limit, 0, keeps training alive.
    rel = below.mean() if below.numel() else diff.new_zeros(())
    return tau - F.relu(tau - rel)


def discriminator_tprls_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor], tau: float = 0.04) -> Tensor:
    """Truncated pointwise relativistic least squares (TPRLS-GAN, doi:10.1145/3573834.3574506) for the
    discriminator: per sub-discriminator, with m = median(D(y) - D(ŷ)),
    L = mean(((D(y) - D(ŷ)) - m)²) over the points where D(y) < D(ŷ) + m; the term is min(τ, L)."""
    return sum(_tprls(dr, dg, tau) for dr, dg in zip(real_scores, fake_scores))


def generator_tprls_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor], tau: float = 0.04) -> Tensor:
    """The generator's TPRLS: the discriminator formula with the roles of real and generated swapped."""
    return sum(_tprls(dg, dr, tau) for dr, dg in zip(real_scores, fake_scores))


class GeneratorAdversarialLoss(Loss):
    """Generator GAN loss: LSGAN + 2× feature matching + TPRLS, summed over discriminators.

    StyleTTS 2 (Li et al. 2023) trains its decoder against MPD and MSD with the reference's
    ``GeneratorLoss``: gen = Σ mean((1 - D(ŷ))²) (Mao et al. 2017), fm = 2 Σ mean|f(y) - f(ŷ)| (Kong et
    al. 2020), rel = TPRLS with τ = 0.04 (the generator version swaps real and generated).

    forward(outputs: sequence of DiscriminatorOutput for (real, generated), e.g. [mpd(y, ŷ), msd(y, ŷ)])
    → scalar; ``terms(outputs)`` gives the parts per discriminator (``gen/i``, ``fm/i``, ``rel/i``).

    Args:
        tau: TPRLS truncation threshold τ.
        use_tprls: add the TPRLS term.
    """

    def __init__(self, tau: float = 0.04, use_tprls: bool = True):
        super().__init__()
        self.tau = tau
        self.use_tprls = use_tprls

    def terms(self, outputs: Sequence[DiscriminatorOutput]) -> dict[str, Tensor]:
        terms = {}
        for i, out in enumerate(outputs):
            terms[f"gen/{i}"] = generator_lsgan_loss(out.fake_scores)
            terms[f"fm/{i}"] = feature_matching_loss(out.real_features, out.fake_features)
            if self.use_tprls:
                terms[f"rel/{i}"] = generator_tprls_loss(out.real_scores, out.fake_scores, self.tau)
        return terms

    def forward(self, outputs: Sequence[DiscriminatorOutput]) -> Tensor:
        return sum(self.terms(outputs).values())


class DiscriminatorAdversarialLoss(Loss):
    """Discriminator GAN loss: LSGAN + TPRLS, summed over discriminators (the reference's ``DiscriminatorLoss``).

    disc = Σ mean((1 - D(y))²) + mean(D(ŷ)²) (Mao et al. 2017); rel = TPRLS with τ = 0.04.
    Give it outputs computed on a detached generated wave.

    forward(outputs: sequence of DiscriminatorOutput for (real, generated)) → scalar;
    ``terms(outputs)`` gives the parts per discriminator (``disc/i``, ``rel/i``).

    Args:
        tau: TPRLS truncation threshold τ.
        use_tprls: add the TPRLS term.
    """

    def __init__(self, tau: float = 0.04, use_tprls: bool = True):
        super().__init__()
        self.tau = tau
        self.use_tprls = use_tprls

    def terms(self, outputs: Sequence[DiscriminatorOutput]) -> dict[str, Tensor]:
        terms = {}
        for i, out in enumerate(outputs):
            terms[f"disc/{i}"] = discriminator_lsgan_loss(out.real_scores, out.fake_scores)
            if self.use_tprls:
                terms[f"rel/{i}"] = discriminator_tprls_loss(out.real_scores, out.fake_scores, self.tau)
        return terms

    def forward(self, outputs: Sequence[DiscriminatorOutput]) -> Tensor:
        return sum(self.terms(outputs).values())
