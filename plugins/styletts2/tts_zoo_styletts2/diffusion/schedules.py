"""Noise-level schedules for the style diffusion samplers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_zoo import interfaces


def karras_sigmas(
    num_steps: int,
    sigma_min: float = 1e-4,
    sigma_max: float = 3.0,
    rho: float = 9.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Karras et al. 2022 (EDM) eq. 5: ``σ_i = (σ_max^(1/ρ) + i/(n-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ``.

    Returns float32 [num_steps + 1]: σ_max … σ_min, then an appended 0. The op order is the
    reference's ``KarrasSchedule`` (python-float constants, float32 steps), so the values match it
    bit for bit.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if num_steps == 1:  # the formula divides by n - 1; one step starts at σ_max
        return torch.tensor([sigma_max, 0.0], dtype=torch.float32, device=device)
    rho_inv = 1.0 / rho
    steps = torch.arange(num_steps, device=device, dtype=torch.float32)
    sigmas = (sigma_max**rho_inv + (steps / (num_steps - 1)) * (sigma_min**rho_inv - sigma_max**rho_inv)) ** rho
    return F.pad(sigmas, pad=(0, 1), value=0.0)


class KarrasSchedule(interfaces.NoiseSchedule):
    """Karras (EDM) noise schedule: n steps → σ_max … σ_min, 0 (Karras et al. 2022, eq. 5).

    ``__call__(num_steps, device=None)`` → float32 [num_steps + 1]. The defaults are StyleTTS 2's
    empirical values (train_second.py / the inference notebooks: σ_min 1e-4, σ_max 3, ρ 9).

    Args:
        sigma_min: Smallest nonzero noise level (the last one a StyleTTS 2 sampler reaches).
        sigma_max: Largest noise level (the sampler starts at ``sigma_max · noise``).
        rho: Schedule curvature; larger spends more steps at low noise.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 3.0, rho: float = 9.0):
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho

    def __call__(self, num_steps: int, device: torch.device | str | None = None) -> Tensor:
        return karras_sigmas(num_steps, self.sigma_min, self.sigma_max, self.rho, device=device)

    def __repr__(self) -> str:
        return f"KarrasSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"
