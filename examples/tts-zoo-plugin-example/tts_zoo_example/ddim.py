"""A third-party sampler: the registry's Sampler contract, nothing else."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from tts_zoo.interfaces import DenoiseFn, Sampler


class DDIMSampler(Sampler):
    """Deterministic DDIM-style sampler (Euler steps in sigma, no fresh noise).

    Args:
        eta: Fraction of ancestral noise re-injected per step (0 = deterministic).
    """

    def __init__(self, eta: float = 0.0):
        self.eta = eta

    @torch.no_grad()
    def __call__(self, denoise_fn: DenoiseFn, noise: torch.Tensor, sigmas: torch.Tensor, *,
                 extra_args: Optional[dict[str, Any]] = None,
                 callback: Optional[Callable[[dict[str, Any]], None]] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        extra_args = extra_args or {}
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            denoised = denoise_fn(x, sigmas[i], **extra_args)
            if callback:
                callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
            s_next = sigmas[i + 1]
            x = denoised + (x - denoised) * (s_next / sigmas[i]) * (1 - self.eta)
            if self.eta and s_next > 0:
                x = x + self.eta * s_next * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x
