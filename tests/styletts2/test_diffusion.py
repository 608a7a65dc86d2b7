"""Parity and behaviour of the style diffusion (fixtures README sections 3, 5, 6, 7, 9.1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo_styletts2.diffusion.samplers import ADPM2Sampler
from tts_zoo_styletts2.diffusion.schedules import KarrasSchedule
from tts_zoo_styletts2.diffusion.style_diffusion import StyleDiffusion, convert_reference_state_dict
from tts_zoo_styletts2.diffusion.transformer import StyleTransformer1d, Transformer1d


def build(fs: FixtureSet, checkpoint: str = "stage2") -> StyleDiffusion:
    """A StyleDiffusion from the fixture set's config, loaded strictly from its checkpoint."""
    mp = fs.model_params
    diffusion = mp["diffusion"]
    model = StyleDiffusion(
        style_dim=mp["style_dim"],
        embedding_features=fs.aux_config("PLBERT_dir")["model_params"]["hidden_size"],
        multispeaker=fs.multispeaker,
        **diffusion["transformer"],
        embedding_mask_proba=diffusion["embedding_mask_proba"],
        sigma_data=diffusion["dist"]["sigma_data"],
        estimate_sigma_data=diffusion["dist"]["estimate_sigma_data"],
        sigma_mean=diffusion["dist"]["mean"],
        sigma_std=diffusion["dist"]["std"],
    )
    state = fs.stage2_state("diffusion") if checkpoint == "stage2" else fs.stage1_state("diffusion")
    model.load_state_dict(convert_reference_state_dict(state), strict=True)
    return model.eval()


def features_of(fs: FixtureSet, block: dict) -> torch.Tensor | None:
    return block["features"] if fs.multispeaker else None


# -- checkpoint --------------------------------------------------------------------------------


def test_converter_accepts_both_copies_and_checks_them(fixture_set):
    state = fixture_set.stage2_state("diffusion")
    assert any(k.startswith("diffusion.net.") for k in state) and any(k.startswith("unet.") for k in state)
    converted = convert_reference_state_dict(state)
    assert all(k.startswith("net.") for k in converted)
    assert len(converted) * 2 == len(state)

    # Either copy alone converts to the same thing; the stored prefixes are accepted too.
    only_unet = {k: v for k, v in state.items() if k.startswith("unet.")}
    assert convert_reference_state_dict(only_unet).keys() == converted.keys()
    prefixed = convert_reference_state_dict({"module." + k: v for k, v in state.items()})
    assert prefixed.keys() == converted.keys()
    # Idempotent on our own keys (incl. the sigma_data buffers).
    own = build(fixture_set).state_dict()
    assert convert_reference_state_dict(own).keys() == own.keys()

    key = next(k for k in state if k.startswith("unet."))
    tampered = dict(state)
    tampered[key] = state[key] + 1e-3
    with pytest.raises(ValueError, match="differ"):
        convert_reference_state_dict(tampered)
    with pytest.raises(KeyError):
        convert_reference_state_dict({**state, "diffusion.sigma_thing": torch.zeros(1)})


def test_network_and_unconditional_table(fixture_set):
    model = build(fixture_set)
    expected = StyleTransformer1d if fixture_set.multispeaker else Transformer1d
    assert type(model.net) is expected
    assert hasattr(model.net, "to_features") == fixture_set.multispeaker
    # 512 rows regardless of PL-BERT's max_position_embeddings (README 2.1).
    assert model.net.fixed_embedding.embedding.weight.shape[0] == 512
    assert model.channels == 2 * fixture_set.model_params["style_dim"]
    assert float(model.sigma_data) == fixture_set.fx["diffusion_sigma_data"]


# -- denoiser ----------------------------------------------------------------------------------


def test_net_in_scalings(fixture_set):
    fx = fixture_set.fx
    model = build(fixture_set)
    c_skip, c_out, c_in, c_noise = model.scalings(torch.full((1,), fx["denoise_in"]["sigma"]))
    assert_close(c_skip, fx["net_in"]["c_skip"], 1e-6, "c_skip")
    assert_close(c_out, fx["net_in"]["c_out"], 1e-6, "c_out")
    assert_close(c_noise, fx["net_in"]["time"], 1e-6, "time")
    assert_close(c_in * fx["denoise_in"]["x_noisy"], fx["net_in"]["x"], 1e-6, "net_in/x")


@torch.no_grad()
def test_net_out(fixture_set):
    fx = fixture_set.fx
    model = build(fixture_set)
    out = model.net(fx["net_in"]["x"], fx["net_in"]["time"], fx["denoise_in"]["embedding"],
                    features_of(fixture_set, fx["denoise_in"]))
    assert_close(out, fx["net_out"], 5e-6, "net_out")


@torch.no_grad()
def test_denoise_and_guidance(fixture_set):
    fx = fixture_set.fx
    di = fx["denoise_in"]
    model = build(fixture_set)
    args = (di["x_noisy"], di["sigma"], di["embedding"], features_of(fixture_set, di))
    assert_close(model.denoise(*args), fx["denoise_out"], 1e-6, "denoise_out")
    cfg2 = model.denoise(*args, embedding_scale=2.0)
    assert_close(cfg2, fx["denoise_out_cfg2"], 5e-6, "denoise_out_cfg2")

    # The batched guidance equals two separate runs, conditional and unconditional.
    unconditional = model.net.fixed_embedding(di["embedding"])
    masked = model.denoise(di["x_noisy"], di["sigma"], unconditional, features_of(fixture_set, di))
    assert_close(cfg2, masked + (fx["denoise_out"] - masked) * 2.0, 5e-6, "cfg = masked + (cond - masked) * 2")
    # Masking every item (p = 1, no draw) is the unconditional denoiser.
    state = torch.get_rng_state()
    assert_close(model.denoise(*args, embedding_mask_proba=1.0), masked, 0.0, "mask p=1")
    assert torch.equal(torch.get_rng_state(), state)


@torch.no_grad()
def test_stage1_weights(fixture_set):
    fx = fixture_set.fx
    di = fx["denoise_in"]
    model = build(fixture_set, checkpoint="stage1")
    out = model.denoise(di["x_noisy"], di["sigma"], di["embedding"], features_of(fixture_set, di))
    assert_close(out, fx["stage1_check"]["diffusion_denoise"], 1e-6, "stage1_check/diffusion_denoise")


def test_multispeaker_requires_features(fixture_set):
    if not fixture_set.multispeaker:
        pytest.skip("single-speaker set")
    di = fixture_set.fx["denoise_in"]
    with pytest.raises(ValueError, match="features"):
        build(fixture_set).denoise(di["x_noisy"], di["sigma"], di["embedding"])


# -- sampling (README 6 step 3 and 7) ------------------------------------------------------------


@torch.no_grad()
def test_sampler_cfg(fixture_set):
    fx = fixture_set.fx
    sc = fx["sampler_cfg"]
    model = build(fixture_set)
    torch.manual_seed(sc["seed"])
    noise = torch.randn((1, model.channels)).unsqueeze(1)
    assert_close(noise, sc["noise"], 0.0, "sampler_cfg/noise")
    out = model.sample(noise, fx["denoise_in"]["embedding"], fx["ref_s"] if fixture_set.multispeaker else None,
                       sampler=ADPM2Sampler(), schedule=KarrasSchedule(1e-4, 3.0, 9.0),
                       num_steps=sc["num_steps"], embedding_scale=sc["embedding_scale"])
    assert_close(out, sc["out"], 5e-6, "sampler_cfg/out")


def test_infer_fixed_style(fixture_set):
    fx = fixture_set.fx
    inf = fx["infer_fixed"]
    model = build(fixture_set)
    with torch.inference_mode():  # the inference path must work here
        torch.manual_seed(fx["meta"]["seeds"]["sampler"])
        noise = torch.randn((1, model.channels)).unsqueeze(1)
        assert_close(noise, inf["noise"], 0.0, "infer_fixed/noise")
        features = fx["ref_s"] if fixture_set.multispeaker else None
        s_pred = model.sample(noise, inf["bert_dur"], features, num_steps=5, embedding_scale=1.0).squeeze(1)
    assert_close(s_pred, inf["s_pred"], 5e-6, "infer_fixed/s_pred")


def test_sampler_train(fixture_set):
    """The sampler as stage 2 calls it: masking 0.1 (a Bernoulli draw before every network call)."""
    fx = fixture_set.fx
    st, edm = fx["sampler_train"], fx["edm_loss"]
    model = build(fixture_set)
    s_trg = edm["x"].squeeze(1)
    torch.manual_seed(st["seed"])
    noise = torch.randn_like(s_trg).unsqueeze(1)
    assert_close(noise, st["noise"], 0.0, "sampler_train/noise")
    with torch.no_grad():
        out = model.sample(noise, st["embedding"], features_of(fixture_set, st), num_steps=st["num_steps"],
                           embedding_mask_proba=st["embedding_mask_proba"]).squeeze(1)
    assert_close(out, st["out"], 1e-5, "sampler_train/out")
    assert_close(F.l1_loss(out, s_trg), st["loss_sty"], 1e-5, "sampler_train/loss_sty")


def test_sample_with_generator_leaves_global_rng_alone(fixture_set):
    fx = fixture_set.fx
    st = fx["sampler_train"]
    model = build(fixture_set)
    args = (st["noise"], st["embedding"], features_of(fixture_set, st))
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model.sample(*args, num_steps=3, embedding_mask_proba=0.5, generator=torch.Generator().manual_seed(3))
        b = model.sample(*args, num_steps=3, embedding_mask_proba=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert a.shape == st["noise"].shape


# -- training ----------------------------------------------------------------------------------


def test_edm_loss(fixture_set):
    """EDM loss with the reference's draws: randn(B), randn_like(x), then (multispeaker) bernoulli."""
    edm = fixture_set.fx["edm_loss"]
    model = build(fixture_set)
    assert model.current_sigma_data == edm["sigma_data"]
    # train_second.py masks in the multispeaker branch only (README 7).
    proba = None if fixture_set.multispeaker else 0.0
    torch.manual_seed(edm["seed"])
    terms = model.loss_terms(edm["x"], edm["embedding"], features_of(fixture_set, edm), embedding_mask_proba=proba)
    after = torch.get_rng_state()
    for key, atol in [("sigmas", 1e-6), ("noise", 0.0), ("x_noisy", 1e-6), ("x_denoised", 1e-6),
                      ("per_item_weighted_mse", 1e-5), ("loss", 1e-5)]:
        assert_close(terms[key], edm[key], atol, f"edm_loss/{key}")
    # The same draws, one by one: the loss consumed exactly these.
    torch.manual_seed(edm["seed"])
    torch.randn((edm["x"].shape[0],))
    torch.randn_like(edm["x"])
    if fixture_set.multispeaker:
        p = fixture_set.model_params["diffusion"]["embedding_mask_proba"]
        mask = torch.bernoulli(torch.full((edm["x"].shape[0], 1, 1), p)).bool()
        assert torch.equal(mask, edm["embedding_mask"])
    assert torch.equal(torch.get_rng_state(), after)
    # loss() is the scalar of loss_terms(), and gradients reach the network.
    torch.manual_seed(edm["seed"])
    loss = model.loss(edm["x"], edm["embedding"], features_of(fixture_set, edm), embedding_mask_proba=proba)
    assert_close(loss, terms["loss"], 0.0, "loss()")
    loss.backward()
    assert all(p.grad is not None for p in model.net.blocks.parameters())


def test_sigma_data_estimate_is_a_saved_buffer(fixture_set):
    model = build(fixture_set).eval()  # stage 2 runs the diffusion in eval mode
    model.estimate_sigma_data = True  # as in the reference configs
    configured = model.current_sigma_data
    x1 = torch.randn(4, 1, model.channels) * 0.3
    x2 = torch.randn(4, 1, model.channels) * 0.5
    with model.batch_sigma_data(x1) as b1:
        assert b1 == pytest.approx(float(x1.std(dim=-1).mean()))
    with model.batch_sigma_data(x2) as b2:
        # The step uses the batch estimate (as the reference), whatever the module's mode ...
        assert model.current_sigma_data == b2
        c_skip = model.scalings(torch.ones(1))[0]
        assert_close(c_skip, torch.full((1, 1, 1), b2**2 / (1 + b2**2)), 1e-7, "c_skip uses the batch σ_d")
    # ... and afterwards the running mean, which a saved and reloaded model also samples with.
    assert float(model.sigma_data) == pytest.approx((b1 + b2) / 2)
    assert model.current_sigma_data == pytest.approx((b1 + b2) / 2)
    with pytest.raises(FloatingPointError), model.batch_sigma_data(x1 * 10):
        raise FloatingPointError  # a skipped step: the estimate is not taken in
    assert float(model.sigma_data) == pytest.approx((b1 + b2) / 2) and int(model.sigma_data_updates) == 2
    assert model.current_sigma_data == pytest.approx((b1 + b2) / 2)

    state = model.state_dict()
    assert state["sigma_data_updates"] == 2
    fresh = build(fixture_set)
    assert fresh.current_sigma_data == configured == fixture_set.model_params["diffusion"]["dist"]["sigma_data"]
    fresh.load_state_dict(state, strict=True)
    assert fresh.current_sigma_data == pytest.approx((b1 + b2) / 2)
    # A reference file has no sigma_data: it comes from the config (or the converter's argument).
    fresh.load_state_dict(convert_reference_state_dict(fixture_set.stage2_state("diffusion"), sigma_data=0.25))
    assert fresh.current_sigma_data == 0.25

    fixed = build(fixture_set)
    fixed.estimate_sigma_data = False
    with fixed.batch_sigma_data(x1) as used:
        assert used == fixed.current_sigma_data == configured
    assert int(fixed.sigma_data_updates) == 0 and fixed.current_sigma_data == configured
