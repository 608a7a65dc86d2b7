"""Checks of the diffusion kinds that are plain callables: ``Sampler`` and ``NoiseSchedule``.

A sampler is checked against a Gaussian data distribution N(μ, s²), whose exact denoiser is known,
``D(x; σ) = (s² x + σ² μ) / (s² + σ²)`` (Karras et al. 2022, eq. 2-3 for a Gaussian): whatever its
order, a sampler run over a fine schedule must land on μ and s. Its gradient contract is StyleTTS 2's
stage 2: the style reconstruction loss is back-propagated through the sampler into the denoiser's
parameters and its conditioning (the text embedding in ``extra_args``), so the sample must carry a
gradient — a sampler decorated with ``@torch.no_grad()`` fails.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tts_zoo.testing.subject import Subject, assert_gradients, assert_shape, randn

MU, STD = 1.5, 0.5  # the Gaussian the samplers must reproduce


def karras(num_steps: int, sigma_min: float = 1e-3, sigma_max: float = 20.0, rho: float = 7.0,
           dtype: torch.dtype = torch.float32) -> Tensor:
    """Karras et al. 2022, eq. 5, then a final 0: [num_steps + 1] (the kit's own, so that a sampler
    plugin is checked without any schedule plugin)."""
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def gaussian_denoiser(x: Tensor, sigma: Any, shift: Any = 0.0) -> Tensor:
    """The exact denoiser of N(MU + shift, STD²)."""
    return (STD**2 * x + sigma**2 * (MU + shift)) / (STD**2 + sigma**2)


def check_sampler_contract(s: Subject) -> None:
    sampler = s.make()
    for dtype in (torch.float32, torch.float64):
        steps: list[dict[str, Any]] = []
        noise = randn(3, 1, 4, seed=20, dtype=dtype)
        out = sampler(gaussian_denoiser, noise, karras(5, dtype=dtype), callback=steps.append,
                      generator=torch.Generator().manual_seed(0))
        assert_shape(f"sample ({dtype} noise [3, 1, 4])", out, tuple(noise.shape), dtype)
        assert steps, "callback was never called (the contract: once per step)"
        assert all(isinstance(d, dict) and {"i", "x", "sigma", "denoised"} <= set(d) for d in steps), (
            "callback must receive dict(i, x, sigma, denoised)")
        assert [int(d["i"]) for d in steps] == list(range(len(steps))), "callback's i must count the steps from 0"

    # generator: reproducible fresh noise, and torch's global generator left alone
    state = torch.get_rng_state()
    runs = [sampler(gaussian_denoiser, randn(3, 1, 4, seed=21), karras(5), generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1]), "two runs with generators seeded alike differ"
    assert torch.equal(state, torch.get_rng_state()), "with a generator given, the sampler drew from torch's global RNG"

    x = sampler(gaussian_denoiser, randn(20000, seed=22), karras(100), generator=torch.Generator().manual_seed(1))
    mean, std = float(x.mean()), float(x.std())
    assert abs(mean - MU) < 0.05 and abs(std - STD) < 0.05, (
        f"on N({MU}, {STD}²) with its exact denoiser and 100 Karras steps the samples have mean {mean:.3f}, "
        f"std {std:.3f} (noise is unit-variance: the sampler scales it by sigmas[0])")


class _Denoiser(nn.Module):
    """A Gaussian denoiser with a learnable shift of the mean (a parameter the gradient must reach)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(0.25))

    def forward(self, x: Tensor, sigma: Any, embedding: Tensor) -> Tensor:
        return gaussian_denoiser(x, sigma, self.shift + embedding.mean())


def check_sampler_gradients(s: Subject) -> None:
    sampler = s.make()
    denoiser = _Denoiser()
    noise = randn(3, 1, 4, seed=23).requires_grad_(True)
    embedding = randn(3, 5, 2, seed=24).requires_grad_(True)
    out = sampler(denoiser, noise, karras(5), extra_args={"embedding": embedding},
                  generator=torch.Generator().manual_seed(0))
    assert out.requires_grad, (
        "the sample carries no gradient: a sampler must not run under torch.no_grad() (StyleTTS 2's stage 2 "
        "back-propagates the style reconstruction loss through it into the denoiser and the text embedding)")
    assert_gradients("the sample", (out * randn(*out.shape, seed=25)).sum(),
                     {"noise": noise, "extra_args['embedding']": embedding}, denoiser)


def check_schedule_contract(s: Subject) -> None:
    schedule = s.make()
    for n in (1, 2, 10):
        sigmas = schedule(n)
        assert_shape(f"schedule({n})", sigmas, (n + 1,))
        assert sigmas.is_floating_point(), f"schedule({n}): dtype {sigmas.dtype}, expected floating point"
        assert float(sigmas[-1]) == 0.0, f"schedule({n}) must end in 0, ends in {float(sigmas[-1])}"
        assert bool((sigmas[:-1] > 0).all()), f"schedule({n}): sigmas before the last must be positive"
        assert bool((sigmas[1:] < sigmas[:-1]).all()), f"schedule({n}) is not decreasing: {sigmas.tolist()}"
        assert torch.equal(sigmas, schedule(n)), f"schedule({n}) is not a pure function (two calls differ)"
    assert schedule(3, device="cpu").device.type == "cpu", "schedule(n, device='cpu') is not on the CPU"


def check_schedule_device(s: Subject) -> None:
    sigmas = s.make()(3, device="cuda")
    assert sigmas.device.type == "cuda", f"schedule(3, device='cuda') is on {sigmas.device}"


SAMPLER_CHECKS = {"contract": check_sampler_contract, "gradients": check_sampler_gradients}
SCHEDULE_CHECKS = {"contract": check_schedule_contract}
if torch.cuda.is_available():
    SCHEDULE_CHECKS["device"] = check_schedule_device
