"""A third-party sampler: the registry's Sampler contract, nothing else."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from tts_zoo.interfaces import DenoiseFn, Sampler


class DDIMSampler(Sampler):
    """DDIM sampler in sigma (Euler steps; eta > 0 re-injects fresh noise, eta = 1 is ancestral).

    Song et al. 2021 (DDIM) in the sigma parametrisation of Karras et al. 2022: per step sigma -> s',
    sigma_up = eta * sqrt(s'^2 (sigma^2 - s'^2) / sigma^2) (at most s'), sigma_down = sqrt(s'^2 - sigma_up^2),
    x <- D + (x - D) * sigma_down / sigma + sigma_up * noise, where D is the denoised estimate.

    No ``@torch.no_grad()`` here: the Sampler contract is differentiable, because StyleTTS 2's stage 2
    back-propagates the style reconstruction loss through the sampler into the denoiser (callers that
    only sample wrap the call in ``torch.no_grad()`` / ``inference_mode`` themselves).

    Args:
        eta: Share of each step's noise that is fresh (0 = deterministic DDIM, 1 = ancestral).
    """

    def __init__(self, eta: float = 0.0):
        self.eta = eta

    def __call__(self, denoise_fn: DenoiseFn, noise: torch.Tensor, sigmas: torch.Tensor, *,
                 extra_args: Optional[dict[str, Any]] = None,
                 callback: Optional[Callable[[dict[str, Any]], None]] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        extra_args = extra_args or {}
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            sigma, s_next = float(sigmas[i]), float(sigmas[i + 1])
            denoised = denoise_fn(x, sigmas[i], **extra_args)
            if callback:
                callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
            sigma_up = min(s_next, self.eta * math.sqrt(s_next**2 * (sigma**2 - s_next**2) / sigma**2))
            sigma_down = math.sqrt(s_next**2 - sigma_up**2)
            x = denoised + (x - denoised) * (sigma_down / sigma)
            if sigma_up > 0:
                x = x + sigma_up * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x
