"""Samplers for K-diffusion (EDM) denoisers, one call signature for all (``tts_zoo.interfaces.Sampler``).

``sampler(denoise_fn, noise, sigmas, *, extra_args=None, callback=None, generator=None)``, in the
manner of k-diffusion's ``sampling.py``: ``denoise_fn(x, sigma, **extra_args)`` is the denoiser
D(x; σ) (Karras et al. 2022); ``noise`` is unit-variance and scaled by ``sigmas[0]``; ``sigmas`` is a
decreasing schedule, usually ending in 0. ``callback(dict(i, x, sigma, denoised))`` runs once per step
with the state before the update. Fresh noise comes from ``generator``, or from torch's global
generator (drawn with ``randn_like``, as the reference does) when it is None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import Tensor

from tts_zoo import interfaces


def randn_like(x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Standard normal noise shaped like ``x``: ``torch.randn_like`` on the global generator (the
    reference's draw, so seeded runs match it), or ``torch.randn(..., generator=generator)``."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class ADPM2Sampler(interfaces.Sampler):
    """Ancestral DPM-Solver-2 sampler: StyleTTS 2's style sampler (the reference's ``ADPM2Sampler``).

    Per step σ → σ' (Lu et al. 2022, DPM-Solver-2 midpoint + Karras et al. 2022 ancestral noise):
    σ_up = sqrt(σ'² (σ² - σ'²) / σ²), σ_down = sqrt(σ'² - σ_up²), σ_mid = ((σ^(1/ρ) + σ_down^(1/ρ)) / 2)^ρ;
    d = (x - D(x, σ)) / σ; x_mid = x + d (σ_mid - σ); d_mid = (x_mid - D(x_mid, σ_mid)) / σ_mid;
    x ← x + d_mid (σ_down - σ) + σ_up · ε. Two denoiser calls and one noise draw per step.

    As in the reference, the final transition to σ = 0 is never taken: with a Karras schedule of n
    steps the sampler makes n - 1 steps and returns the sample at σ_min (ε of the last step included).
    The scalar arithmetic mirrors the reference (python-float square roots of float32 tensors), so
    seeded runs reproduce it.

    Args:
        rho: Exponent of the midpoint rule (1: arithmetic mean of σ and σ_down).
    """

    def __init__(self, rho: float = 1.0):
        self.rho = rho

    def __call__(
        self,
        denoise_fn: interfaces.DenoiseFn,
        noise: Tensor,
        sigmas: Tensor,
        *,
        extra_args: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        extra_args = extra_args or {}
        num_steps = len(sigmas) - 1
        if num_steps > 0 and float(sigmas[-1]) == 0.0:
            num_steps -= 1  # the reference stops at the last nonzero sigma
        x = sigmas[0] * noise
        r = self.rho
        for i in range(num_steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            sigma_up = math.sqrt(max(0.0, float(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)))
            sigma_down = math.sqrt(max(0.0, float(sigma_next**2 - sigma_up**2)))
            sigma_mid = ((sigma ** (1 / r) + sigma_down ** (1 / r)) / 2) ** r
            denoised = denoise_fn(x, sigma, **extra_args)
            if callback is not None:
                callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
            d = (x - denoised) / sigma
            x_mid = x + d * (sigma_mid - sigma)
            d_mid = (x_mid - denoise_fn(x_mid, sigma_mid, **extra_args)) / sigma_mid
            x = x + d_mid * (sigma_down - sigma)
            x = x + randn_like(x, generator) * sigma_up
        return x


class EulerSampler(interfaces.Sampler):
    """Euler sampler of the probability-flow ODE (deterministic, first order).

    dx/dσ = (x - D(x, σ)) / σ (Karras et al. 2022, alg. 2 without churn; k-diffusion
    ``sample_euler``). One denoiser call per step; the last step to σ = 0 returns the denoised estimate.
    """

    def __call__(
        self,
        denoise_fn: interfaces.DenoiseFn,
        noise: Tensor,
        sigmas: Tensor,
        *,
        extra_args: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        extra_args = extra_args or {}
        s = sigmas.tolist()
        x = sigmas[0] * noise
        for i in range(len(s) - 1):
            denoised = denoise_fn(x, s[i], **extra_args)
            if callback is not None:
                callback({"i": i, "x": x, "sigma": s[i], "denoised": denoised})
            x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
        return x


class HeunSampler(interfaces.Sampler):
    """Heun sampler of the probability-flow ODE (deterministic, second order).

    Karras et al. 2022, alg. 1 (k-diffusion ``sample_heun`` without churn): an Euler step corrected
    with the slope at its end point. Two denoiser calls per step, one on the last step to σ = 0
    (plain Euler there).
    """

    def __call__(
        self,
        denoise_fn: interfaces.DenoiseFn,
        noise: Tensor,
        sigmas: Tensor,
        *,
        extra_args: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        extra_args = extra_args or {}
        s = sigmas.tolist()
        x = sigmas[0] * noise
        for i in range(len(s) - 1):
            denoised = denoise_fn(x, s[i], **extra_args)
            if callback is not None:
                callback({"i": i, "x": x, "sigma": s[i], "denoised": denoised})
            d = (x - denoised) / s[i]
            dt = s[i + 1] - s[i]
            x_next = x + d * dt
            if s[i + 1] > 0:  # trapezoidal correction with the slope at the end point
                d_next = (x_next - denoise_fn(x_next, s[i + 1], **extra_args)) / s[i + 1]
                x_next = x + (d + d_next) / 2 * dt
            x = x_next
        return x


class DPMpp2MSampler(interfaces.Sampler):
    """DPM-Solver++(2M) sampler (deterministic, second order multistep).

    Lu et al. 2022, "DPM-Solver++", alg. 2 (k-diffusion ``sample_dpmpp_2m``), in log-σ time on the
    denoised estimate: with t = -ln σ, h = t' - t, x ← (σ'/σ) x - (e^{-h} - 1) D̂, where D̂ extrapolates
    the current and previous denoised estimates (first step and last step to σ = 0: D̂ = D). One
    denoiser call per step.
    """

    def __call__(
        self,
        denoise_fn: interfaces.DenoiseFn,
        noise: Tensor,
        sigmas: Tensor,
        *,
        extra_args: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        extra_args = extra_args or {}
        s = sigmas.tolist()
        x = sigmas[0] * noise
        old_denoised, h_last = None, None
        for i in range(len(s) - 1):
            denoised = denoise_fn(x, s[i], **extra_args)
            if callback is not None:
                callback({"i": i, "x": x, "sigma": s[i], "denoised": denoised})
            if s[i + 1] == 0:
                x = denoised
                break
            h = math.log(s[i]) - math.log(s[i + 1])
            estimate = denoised
            if old_denoised is not None:
                r = h_last / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * estimate
            old_denoised, h_last = denoised, h
        return x
