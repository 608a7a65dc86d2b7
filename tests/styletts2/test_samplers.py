"""Noise schedule parity and known-answer tests of the K-diffusion samplers.

Known answer: for data x0 ~ N(μ, s²) the exact denoiser is D(x, σ) = (s² x + σ² μ) / (s² + σ²), the
noisy marginal at σ is N(μ, s² + σ²) and the probability-flow ODE maps x(σ_max) to
μ + s / sqrt(s² + σ_max²) · (x(σ_max) - μ). Starting from that marginal, every sampler must return
samples with mean μ and variance s², with errors that shrink as the steps grow.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.styletts2.reference import assert_close
from tts_zoo import interfaces
from tts_zoo_styletts2.diffusion.samplers import ADPM2Sampler, DPMpp2MSampler, EulerSampler, HeunSampler
from tts_zoo_styletts2.diffusion.schedules import KarrasSchedule, karras_sigmas

MU, S = 1.0, 0.5
N_SAMPLES = 65536
SAMPLERS = [ADPM2Sampler, EulerSampler, HeunSampler, DPMpp2MSampler]


def exact_denoiser(x: torch.Tensor, sigma) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype)
    return (S**2 * x + sigma**2 * MU) / (S**2 + sigma**2)


def start_noise(sigma_max: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-scale noise whose σ_max multiple is distributed as the exact noisy marginal, and x(σ_max).

    z is standardised (sample mean 0, variance 1) so that deterministic samplers carry no Monte
    Carlo error into the moments."""
    z = torch.randn(N_SAMPLES, 1, 1, generator=generator, dtype=torch.float64)
    z = (z - z.mean()) / z.std()
    x_max = MU + math.sqrt(S**2 + sigma_max**2) * z
    return x_max / sigma_max, x_max


def run(sampler: interfaces.Sampler, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, exact ODE solution from the same start) for a Karras schedule of num_steps."""
    generator = torch.Generator().manual_seed(0)
    sigmas = KarrasSchedule()(num_steps).double()
    noise, x_max = start_noise(float(sigmas[0]), generator)
    out = sampler(exact_denoiser, noise, sigmas, generator=generator)
    exact = MU + S / math.sqrt(S**2 + float(sigmas[0]) ** 2) * (x_max - MU)
    return out, exact


# -- schedule ----------------------------------------------------------------------------------


def test_karras_parity(fixture_set):
    fx = fixture_set.fx
    assert_close(karras_sigmas(5), fx["karras_sigmas_5"], 1e-6, "karras_sigmas_5")
    assert_close(karras_sigmas(10), fx["karras_sigmas_10"], 1e-6, "karras_sigmas_10")
    schedule = KarrasSchedule(sigma_min=1e-4, sigma_max=3.0, rho=9.0)
    assert isinstance(schedule, interfaces.NoiseSchedule)
    assert torch.equal(schedule(5, "cpu"), karras_sigmas(5))


@pytest.mark.parametrize("num_steps", [1, 2, 7])
def test_karras_shape(num_steps):
    sigmas = KarrasSchedule(sigma_min=0.01, sigma_max=10.0, rho=7.0)(num_steps)
    assert sigmas.shape == (num_steps + 1,) and sigmas.dtype == torch.float32
    assert sigmas[0].item() == pytest.approx(10.0) and sigmas[-1].item() == 0.0
    assert torch.all(sigmas[:-1] > sigmas[1:])
    if num_steps > 1:
        assert sigmas[-2].item() == pytest.approx(0.01)


# -- known answer ------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler_cls", [EulerSampler, HeunSampler, DPMpp2MSampler])
def test_ode_samplers_converge_to_the_exact_flow(sampler_cls):
    sampler = sampler_cls()
    errors = []  # RMS distance to the exact ODE solution from the same start
    for num_steps in (5, 10, 20, 50):
        out, exact = run(sampler, num_steps)
        errors.append((out - exact).pow(2).mean().sqrt().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    first_order = sampler_cls is EulerSampler
    assert errors[-1] < (0.03 if first_order else 3e-3), errors
    # 20 -> 50 steps: error / 2.5 (first order) or / 6.25 (second order), with some slack.
    assert errors[2] / errors[3] > (2.0 if first_order else 4.0), errors
    assert out.mean().item() == pytest.approx(MU, abs=1e-6)
    assert out.var().item() == pytest.approx(S**2, abs=0.03 if first_order else 3e-3)


def test_adpm2_moments_converge():
    """Stochastic: the moments converge to the data's, within the Monte Carlo error at 50 steps."""
    sampler = ADPM2Sampler()
    mean_sd, var_sd = S / math.sqrt(N_SAMPLES), S**2 * math.sqrt(2 / N_SAMPLES)
    var_errors = []
    for num_steps in (3, 10, 50):
        out, _ = run(sampler, num_steps)
        var_errors.append(abs(out.var().item() - S**2))
        assert abs(out.mean().item() - MU) < 5 * mean_sd
    assert var_errors[0] > var_errors[1] > var_errors[2], var_errors
    assert var_errors[-1] < 5 * var_sd, var_errors


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler_cls", SAMPLERS)
def test_contract_and_callback(sampler_cls):
    sampler = sampler_cls()
    assert isinstance(sampler, interfaces.Sampler)
    sigmas = karras_sigmas(4)
    seen, calls = [], []

    def denoise(x, sigma, *, scale):
        calls.append(float(sigma))
        return exact_denoiser(x, sigma) * scale

    noise = torch.randn(3, 1, 6)
    out = sampler(denoise, noise, sigmas, extra_args={"scale": 1.0}, callback=seen.append,
                  generator=torch.Generator().manual_seed(1))
    assert out.shape == noise.shape and torch.isfinite(out).all()
    # ADPM2 (the reference's) never takes the last step to σ = 0; the ODE samplers do.
    expected_steps = 3 if sampler_cls is ADPM2Sampler else 4
    assert [c["i"] for c in seen] == list(range(expected_steps))
    assert all({"x", "sigma", "denoised"} <= c.keys() for c in seen)
    assert calls[0] == pytest.approx(float(sigmas[0]))
    assert min(calls) > 0


def test_adpm2_draws_like_the_reference():
    """generator=None: one global ``randn_like(x)`` per step, nothing else; a generator: global RNG untouched."""
    sampler = ADPM2Sampler()
    sigmas = karras_sigmas(5)
    noise = torch.randn(2, 1, 8)
    torch.manual_seed(7)
    out_global = sampler(exact_denoiser, noise, sigmas)
    after = torch.get_rng_state()
    torch.manual_seed(7)
    draws = [torch.randn_like(noise) for _ in range(4)]
    assert torch.equal(torch.get_rng_state(), after)

    # Rebuild the result from those draws with the step formulas (README 7).
    x = sigmas[0] * noise
    for i in range(4):
        s0, s1 = sigmas[i], sigmas[i + 1]
        up = math.sqrt(s1**2 * (s0**2 - s1**2) / s0**2)
        down = math.sqrt(s1**2 - up**2)
        mid = (s0 + down) / 2
        d = (x - exact_denoiser(x, s0)) / s0
        x_mid = x + d * (mid - s0)
        d_mid = (x_mid - exact_denoiser(x_mid, mid)) / mid
        x = x + d_mid * (down - s0) + draws[i] * up
    assert_close(out_global, x, 1e-6, "ADPM2 step formulas")

    state = torch.get_rng_state()
    a = sampler(exact_denoiser, noise, sigmas, generator=torch.Generator().manual_seed(5))
    b = sampler(exact_denoiser, noise, sigmas, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(a, b)
    assert not torch.equal(a, out_global)
