"""Parity of the StyleTTS 2 decoders (HiFi-GAN, iSTFTNet) with the reference fixtures.

Tolerances: fixtures README sections 9.1 and 9.3. Every module is built from the fixture set's config
(``model_params.decoder``, ``hidden_dim``, ``style_dim`` and the hard-wired widths of section 2.1).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo.interfaces import Vocoder
from tts_zoo_styletts2.decoders import base
from tts_zoo_styletts2.decoders.base import StyleTTS2Decoder
from tts_zoo_styletts2.decoders.hifigan import HiFiGANDecoder
from tts_zoo_styletts2.decoders.istftnet import ISTFTNetDecoder

DECODERS = {"hifigan": HiFiGANDecoder, "istftnet": ISTFTNetDecoder}


def build_decoder(fs: FixtureSet, weights: str = "stage2") -> StyleTTS2Decoder:
    """The fixture set's decoder, loaded strictly from its checkpoint, in eval mode."""
    params = dict(fs.model_params["decoder"])
    cls = DECODERS[params.pop("type")]
    decoder = cls(
        dim_in=fs.model_params["hidden_dim"],
        style_dim=fs.model_params["style_dim"],
        hidden_dim=fs.overrides["decoder_hidden_dim"],
        asr_res_dim=fs.overrides["decoder_asr_res_dim"],
        **params,
    )
    state = fs.stage2_state("decoder") if weights == "stage2" else fs.stage1_state("decoder")
    decoder.load_state_dict(state, strict=True)
    return decoder.eval()


def is_istftnet(fs: FixtureSet) -> bool:
    return fs.model_params["decoder"]["type"] == "istftnet"


def run_seeded(decoder: StyleTTS2Decoder, seed: int, *inputs: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(seed)
    return decoder(*inputs)


def injected_generator(decoder: StyleTTS2Decoder, db: dict, istftnet: bool) -> torch.Tensor:
    """The generator on the stored ``generator_in`` with the stored source (or its STFT) injected."""
    if istftnet:
        return decoder.generator(db["generator_in"], db["s"], None, har_spec=db["har_spec"], har_phase=db["har_phase"])
    return decoder.generator(db["generator_in"], db["s"], None, har_source=db["har_source"].transpose(1, 2))


def test_builds_and_loads_strictly(fixture_set):
    decoder = build_decoder(fixture_set)
    assert isinstance(decoder, Vocoder)
    assert decoder.samples_per_frame == 600
    # The iSTFT window is a non-persistent buffer: it never enters the state dict.
    assert set(decoder.state_dict()) == set(fixture_set.stage2_state("decoder"))


@torch.no_grad()
def test_generator_input(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    x, f0 = decoder.generator_input(db["asr"], db["F0"], db["N"], db["s"])
    assert_close(x, db["generator_in"], 1e-4, "decoder_batch/generator_in")
    assert torch.equal(f0, db["F0"])  # eval: no smoothing


@torch.no_grad()
def test_harmonic_source(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    torch.manual_seed(db["seed"])
    har_source = decoder.generator.harmonic_source(db["F0"])
    assert_close(har_source, db["har_source"], 1e-3, "decoder_batch/har_source")
    # Voicing decision: the 10 Hz threshold on the nearest-upsampled F0.
    scale = decoder.generator.upsample_scale
    f0 = F.interpolate(db["F0"][:, None], scale_factor=float(scale), mode="nearest").transpose(1, 2)
    torch.manual_seed(db["seed"])
    _, _, uv = decoder.generator.m_source(f0)
    assert torch.equal(uv.bool(), db["uv"])


@torch.no_grad()
def test_source_draw_order(fixture_set):
    """README section 7: rand(B, 9), randn_like(sines) [B, S, 9], randn_like(uv) [B, S, 1]."""
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    out = run_seeded(decoder, db["seed"], db["asr"], db["F0"], db["N"], db["s"])
    # Injecting the source draws nothing.
    injected_generator(decoder, db, is_istftnet(fixture_set))
    after_forward = torch.rand(8)
    batch, samples = out.shape[0], out.shape[-1]
    torch.manual_seed(db["seed"])
    torch.rand(batch, 9)
    # The sines are a transposed [B, 9, S] tensor; torch's normal_ consumes the generator
    # differently for non-contiguous tensors, so the layout is part of the draw order.
    torch.randn_like(torch.empty(batch, 9, samples).transpose(1, 2))
    torch.randn(batch, samples, 1)
    assert torch.equal(after_forward, torch.rand(8))


@torch.no_grad()
def test_generator_on_injected_source(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    atol = 1e-4 if is_istftnet(fixture_set) else 2e-4
    out = injected_generator(decoder, db, is_istftnet(fixture_set))
    assert_close(out, db["out"], atol, "decoder_batch/out (generator on the stored source)")


@torch.no_grad()
def test_fast_path_is_as_accurate_as_the_reference_ops(fixture_set, monkeypatch):
    """The inference fast path (in place; on CPU time-major, with channels-last convolutions) sums in
    another order than the reference ops, so both are held against the float64 truth: the fast path
    may be at most 3x as far from it. (An instance norm by torch's channels-last batch norm was 25x.)"""
    istftnet = is_istftnet(fixture_set)
    db = fixture_set.fx["decoder_batch"]
    fast = injected_generator(build_decoder(fixture_set), db, istftnet)
    monkeypatch.setattr(base, "FAST_PATH", False)
    reference_ops = injected_generator(build_decoder(fixture_set), db, istftnet)
    exact_decoder = build_decoder(fixture_set).double()
    exact_decoder.generator.window = getattr(exact_decoder.generator, "window", torch.empty(0)).double()
    exact = injected_generator(exact_decoder, {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
                                               for k, v in db.items()}, istftnet)
    fast_error, reference_error = [float((out - exact).abs().max()) for out in (fast, reference_ops)]
    assert fast_error <= 3 * reference_error + 1e-7, f"fast path {fast_error:.3g} from float64, reference ops {reference_error:.3g}"


@torch.no_grad()
def test_fast_path_in_channel_major_memory_is_the_reference_ops_bit_for_bit(fixture_set, monkeypatch):
    """With ``TIME_MAJOR`` off (and on GPUs) the fast path only reorders commutative float ops."""
    istftnet, db = is_istftnet(fixture_set), fixture_set.fx["decoder_batch"]
    monkeypatch.setattr(base, "TIME_MAJOR", False)
    fast = injected_generator(build_decoder(fixture_set), db, istftnet)
    monkeypatch.setattr(base, "FAST_PATH", False)
    assert torch.equal(fast, injected_generator(build_decoder(fixture_set), db, istftnet))


@torch.no_grad()
def test_fast_path_runs_every_generator_convolution_channels_last_on_cpu(fixture_set, monkeypatch):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    seen = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda x, *a, _f=original: seen.append(x.is_contiguous(memory_format=torch.channels_last)) or _f(x, *a))
    injected_generator(decoder, db, is_istftnet(fixture_set))
    convs = [m for m in decoder.generator.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    assert len(seen) == len(convs) and all(seen)


@torch.no_grad()
def test_istftnet_source_stft(fixture_set):
    """The source's STFT as the generator computes it, compared as complex numbers (the phase of a
    near-real bin may legitimately come out as -π instead of +π, README 9.3)."""
    if not is_istftnet(fixture_set):
        pytest.skip("iSTFTNet only")
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    window = fixture_set.fx["audio"]["istft_window"]
    assert torch.equal(decoder.generator.window, window)
    mag, phase = decoder.generator.source_stft(db["har_source"][..., 0])
    assert_close(mag, db["har_spec"], 1e-5, "decoder_batch/har_spec")
    assert_close(torch.view_as_real(torch.polar(mag, phase)),
                 torch.view_as_real(torch.polar(db["har_spec"], db["har_phase"])), 1e-5, "source STFT")


@torch.no_grad()
def test_decoder_end_to_end(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    out = run_seeded(decoder, db["seed"], db["asr"], db["F0"], db["N"], db["s"])
    if not is_istftnet(fixture_set):
        assert_close(out, db["out"], 5e-3, "decoder_batch/out (HiFi-GAN, end to end)")
        return
    # iSTFTNet: bit-for-bit only if our STFT of the drawn source gives the same ±π phases as the
    # reference machine's FFT; one flipped bin moves the output by ~0.1 (README 9.3).
    torch.manual_seed(db["seed"])
    _, phase = decoder.generator.source_stft(decoder.generator.harmonic_source(db["F0"])[..., 0])
    flips = int(((phase - db["har_phase"]).abs() > math.pi).sum())
    if flips == 0:
        assert_close(out, db["out"], 1e-4, "decoder_batch/out (iSTFTNet, end to end)")
    else:
        relative = ((out - db["out"]).norm() / db["out"].norm()).item()
        assert relative < 0.05, f"{flips} phase flip(s); relative L2 error {relative:.3g}"


@torch.no_grad()
def test_inference_path(fixture_set):
    """README section 6, step 8: decoder(asr, F0_pred, N_pred, ref.squeeze().unsqueeze(0))."""
    decoder, fx = build_decoder(fixture_set), fixture_set.fx
    inf = fx["infer_fixed"]
    ref = inf["ref"].squeeze().unsqueeze(0)
    x, _ = decoder.generator_input(inf["asr"], inf["F0_pred"], inf["N_pred"], ref)
    assert_close(x, inf["generator_in"], 1e-4, "infer_fixed/generator_in")
    out = run_seeded(decoder, fx["meta"]["seeds"]["decoder"], inf["asr"], inf["F0_pred"], inf["N_pred"], ref)
    assert out.shape[-1] == decoder.samples_per_frame * inf["asr"].shape[-1]
    assert_close(out, inf["out"], 1e-3, "infer_fixed/out")


@torch.no_grad()
def test_stage1_weights(fixture_set):
    decoder, fx = build_decoder(fixture_set, weights="stage1"), fixture_set.fx
    db, check = fx["decoder_batch"], fx["stage1_check"]
    out = run_seeded(decoder, db["seed"], db["asr"], db["F0"], db["N"], db["s"])
    n = check["decoder_first_2400"].shape[-1]
    assert_close(out[..., :n], check["decoder_first_2400"], 1e-3, "stage1_check/decoder_first_2400")
    sums = torch.stack([out.sum(), out.abs().sum()])
    expected = check["decoder_sum_abssum"]
    # Sums over the whole batch: float32 accumulation error scales with the magnitude.
    assert_close(sums, expected, 1e-5 * expected[1].item(), "stage1_check/decoder_sum_abssum")


def test_inference_mode(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    with torch.inference_mode():
        out = run_seeded(decoder, db["seed"], db["asr"], db["F0"], db["N"], db["s"])
    assert out.is_inference()
    with torch.no_grad():
        expected = run_seeded(decoder, db["seed"], db["asr"], db["F0"], db["N"], db["s"])
    assert torch.equal(out, expected)


@torch.no_grad()
def test_remove_weight_norm(fixture_set):
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    istftnet = is_istftnet(fixture_set)
    before = injected_generator(decoder, db, istftnet)
    x_before, _ = decoder.generator_input(db["asr"], db["F0"], db["N"], db["s"])
    decoder.remove_weight_norm()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in decoder.state_dict())
    assert_close(injected_generator(decoder, db, istftnet), before, 1e-5, "generator after remove_weight_norm")
    x_after, _ = decoder.generator_input(db["asr"], db["F0"], db["N"], db["s"])
    assert_close(x_after, x_before, 1e-5, "body after remove_weight_norm")


@torch.no_grad()
def test_train_mode_box_smoothing(fixture_set, monkeypatch):
    """Train mode smooths F0 (width 0/3/7) and energy (0/3/7/15) by a zero-padded moving average."""
    decoder, db = build_decoder(fixture_set), fixture_set.fx["decoder_batch"]
    inputs = (db["asr"], db["F0"], db["N"], db["s"])
    x_eval, _ = decoder.generator_input(*inputs)
    decoder.train()
    monkeypatch.setattr(base.random, "randint", lambda a, b: 0)  # widths 0: no smoothing
    x_plain, f0_plain = decoder.generator_input(*inputs)
    assert torch.equal(x_plain, x_eval) and torch.equal(f0_plain, db["F0"])

    monkeypatch.setattr(base.random, "randint", lambda a, b: b)  # widths 7 (F0) and 15 (energy)
    x_smooth, f0_smooth = decoder.generator_input(*inputs)
    expected_f0 = F.avg_pool1d(db["F0"][:, None], 7, 1, 3, count_include_pad=True)[:, 0]
    assert_close(f0_smooth, expected_f0, 1e-4, "smoothed F0")
    decoder.eval()
    expected_n = F.avg_pool1d(db["N"][:, None], 15, 1, 7, count_include_pad=True)[:, 0]
    x_expected, _ = decoder.generator_input(db["asr"], expected_f0, expected_n, db["s"])
    assert_close(x_smooth, x_expected, 1e-4, "generator input with smoothed F0 and energy")
