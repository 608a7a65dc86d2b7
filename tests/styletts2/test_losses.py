"""Parity of the StyleTTS 2 losses with the reference (fixtures README sections 5, 8, 9.1)."""

from __future__ import annotations

import math

import torch

from tests.styletts2.reference import assert_close
from tests.styletts2.test_discriminators import build_mpd, build_msd
from tts_zoo import interfaces
from tts_zoo.interfaces import DiscriminatorOutput
from tts_zoo_styletts2.losses.adversarial import (
    DiscriminatorAdversarialLoss,
    GeneratorAdversarialLoss,
    discriminator_tprls_loss,
    feature_matching_loss,
    generator_tprls_loss,
)
from tts_zoo_styletts2.losses.prosody import (
    DurationBCELoss,
    DurationL1Loss,
    EnergyReconstructionLoss,
    F0ReconstructionLoss,
    StyleReconstructionLoss,
)
from tts_zoo_styletts2.losses.slm import WavLMDiscriminatorLoss, WavLMFeatureLoss, WavLMGeneratorLoss
from tts_zoo_styletts2.losses.stft import MultiResolutionSTFTLoss


def test_stft_loss_matches_reference(fixture_set):
    L = fixture_set.fx["losses"]
    loss = MultiResolutionSTFTLoss()
    assert isinstance(loss, interfaces.Loss)
    with torch.inference_mode():
        value = loss(L["y_hat"], L["y"])  # (prediction, target), as train_second.py calls it
        per_res = torch.stack(loss.per_resolution(L["y_hat"], L["y"]))
        mel = loss.mel(L["y_hat"].squeeze(1), 0)
        flat = loss(L["y_hat"].squeeze(1), L["y"])  # [B, S] against [B, 1, S]: no broadcast across items
    assert_close(value, L["stft_loss"], 5e-5, "losses/stft_loss")
    assert_close(per_res, L["stft_loss_per_resolution"], 5e-5, "losses/stft_loss_per_resolution")
    assert_close(mel, L["stft_loss_mel_y_hat_res0"], 1e-5, "losses/stft_loss_mel_y_hat_res0")
    assert_close(flat, L["stft_loss"], 5e-5, "losses/stft_loss ([B, S] input)")
    assert loss(L["y"], L["y"]).item() == 0.0


def test_adversarial_losses_match_reference(fixture_set):
    L = fixture_set.fx["losses"]
    mpd, msd = build_mpd(fixture_set), build_msd(fixture_set)
    gl, dl = GeneratorAdversarialLoss(), DiscriminatorAdversarialLoss()
    with torch.inference_mode():
        outputs = [mpd(L["y"], L["y_hat"]), msd(L["y"], L["y_hat"])]
        g_terms, d_terms = gl.terms(outputs), dl.terms(outputs)
        g, d = gl(outputs), dl(outputs)
    assert_close(g, L["generator_loss"], 2e-5, "losses/generator_loss")
    assert_close(d, L["discriminator_loss"], 1e-5, "losses/discriminator_loss")
    gt, dt = L["generator_loss_terms"], L["discriminator_loss_terms"]
    assert_close(g_terms["gen/0"], gt["loss_gen_f"], 2e-5, "loss_gen_f")
    assert_close(g_terms["gen/1"], gt["loss_gen_s"], 2e-5, "loss_gen_s")
    assert_close(g_terms["fm/0"], gt["loss_fm_f"], 2e-5, "loss_fm_f")
    assert_close(g_terms["fm/1"], gt["loss_fm_s"], 2e-5, "loss_fm_s")
    assert_close(g_terms["rel/0"] + g_terms["rel/1"], gt["loss_rel"], 1e-6, "generator loss_rel")
    assert_close(d_terms["disc/0"], dt["loss_disc_f"], 1e-5, "loss_disc_f")
    assert_close(d_terms["disc/1"], dt["loss_disc_s"], 1e-5, "loss_disc_s")
    assert_close(d_terms["rel/0"] + d_terms["rel/1"], dt["loss_rel"], 1e-6, "discriminator loss_rel")


def test_tprls_formula():
    """TPRLS (README 8): m = median(dr - dg) (lower middle), mean of squared deviations where
    dr < dg + m, truncated at τ; the generator swaps the roles."""
    dr = torch.tensor([[0.9, 0.2, 0.5, 0.1]])
    dg = torch.tensor([[0.1, 0.4, 0.3, 0.0]])
    diff = (dr - dg).flatten()  # [0.8, -0.2, 0.2, 0.1] → lower median 0.1
    m = 0.1
    expected = ((diff[diff < m] - m) ** 2).mean()  # only -0.2 → 0.09 > τ → truncated
    assert math.isclose(discriminator_tprls_loss([dr], [dg]).item(), min(0.04, expected.item()), rel_tol=1e-6)
    assert math.isclose(discriminator_tprls_loss([dr], [dg], tau=1.0).item(), expected.item(), rel_tol=1e-6)
    assert torch.equal(generator_tprls_loss([dr], [dg], tau=1.0), discriminator_tprls_loss([dg], [dr], tau=1.0))
    # Identical scores leave nothing below the median: 0 (the reference would give NaN).
    assert discriminator_tprls_loss([dr], [dr]).item() == 0.0


def test_feature_matching_and_gradients():
    real = DiscriminatorOutput([torch.ones(2, 3)], [torch.zeros(2, 3)], [[torch.ones(2, 4), torch.zeros(2, 2)]],
                               [[torch.zeros(2, 4, requires_grad=True), torch.full((2, 2), 0.5, requires_grad=True)]])
    assert feature_matching_loss(real.real_features, real.fake_features).item() == 2 * (1.0 + 0.5)
    total = GeneratorAdversarialLoss(use_tprls=False)([real])
    assert total.item() == 1.0 + 3.0  # mean((1 - 0)²) + feature matching
    total.backward()
    assert all(f.grad is not None for f in real.fake_features[0])
    d = DiscriminatorAdversarialLoss(use_tprls=False)([real])
    assert d.item() == 0.0  # real scored 1, generated 0: a perfect LSGAN discriminator


def test_duration_losses_match_reference(fixture_set):
    D = fixture_set.fx["losses"]["duration"]
    with torch.inference_mode():
        ce = DurationBCELoss()(D["d"], D["d_gt"], D["input_lengths"])
        l1 = DurationL1Loss()(D["d"], D["d_gt"], D["input_lengths"])
    assert_close(ce, D["loss_ce"], 1e-5, "losses/duration/loss_ce")
    assert_close(l1, D["loss_dur"], 1e-5, "losses/duration/loss_dur")


def test_duration_losses_ignore_padding_and_end_tokens():
    logits = torch.randn(2, 5, 8)
    durations = torch.tensor([[1.0, 2, 3, 4, 5], [2, 2, 2, 0, 0]])
    lengths = torch.tensor([5, 3])
    base_ce = DurationBCELoss()(logits, durations, lengths)
    base_l1 = DurationL1Loss()(logits, durations, lengths)
    changed = logits.clone()
    changed[1, 3:] = 100.0  # padding of item 1
    changed[:, 0] += 3.0  # first tokens: in the CE, not in the L1
    changed[0, 4] -= 3.0  # last token of item 0
    assert torch.equal(DurationL1Loss()(changed, durations, lengths), base_l1)
    assert not torch.equal(DurationBCELoss()(changed, durations, lengths), base_ce)
    changed = logits.clone()
    changed[1, 3:] = 100.0
    assert torch.equal(DurationBCELoss()(changed, durations, lengths), base_ce)
    # The ordinal target: a token lasting 3 units has its first 3 bins on.
    perfect = torch.full((1, 3, 8), -30.0)
    perfect[0, 1, :3] = 30.0
    assert DurationL1Loss()(perfect, torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([3])).item() < 1e-6


def test_f0_energy_style_losses_match_reference(fixture_set):
    Fn = fixture_set.fx["losses"]["F0_norm"]
    with torch.inference_mode():
        f0 = F0ReconstructionLoss()(Fn["F0_real"], Fn["F0_fake"])
        n = EnergyReconstructionLoss()(Fn["N_real"], Fn["N_fake"])
    assert_close(f0, Fn["loss_F0_rec"], 1e-5, "losses/F0_norm/loss_F0_rec")
    assert_close(n, Fn["loss_norm_rec"], 1e-5, "losses/F0_norm/loss_norm_rec")
    s, x = fixture_set.fx["sampler_train"], fixture_set.fx["edm_loss"]["x"]
    assert_close(StyleReconstructionLoss()(s["out"], x.squeeze(1)), s["loss_sty"], 1e-6, "sampler_train/loss_sty")
    target = torch.randn(2, 4, requires_grad=True)
    pred = torch.randn(2, 4, requires_grad=True)
    StyleReconstructionLoss()(pred, target).backward()
    assert target.grad is None and pred.grad is not None  # the target style is detached


def test_wavlm_losses_match_reference(fixture_set):
    W = fixture_set.fx["wavlm"]
    with torch.inference_mode():
        feature = WavLMFeatureLoss()(list(W["hidden_states_real"]), list(W["hidden_states_fake"]))
        gen = WavLMGeneratorLoss()(W["wd_out_fake"])
        disc = WavLMDiscriminatorLoss()(W["wd_out_real"], W["wd_out_fake"])
    assert_close(feature, W["feature_loss"], 1e-5, "wavlm/feature_loss")
    assert_close(gen, W["generator_loss"], 1e-5, "wavlm/generator_loss")
    assert_close(disc, W["discriminator_loss"], 1e-5, "wavlm/discriminator_loss")
