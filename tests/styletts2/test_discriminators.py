"""Parity of the StyleTTS 2 discriminators (MPD, MSD, WavLM head) with the reference (fixtures README
sections 5, 8, 9.1)."""

from __future__ import annotations

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close, tiny_wavlm_config
from tts_zoo import interfaces
from tts_zoo_styletts2.discriminators.mpd import MultiPeriodDiscriminator
from tts_zoo_styletts2.discriminators.msd import MultiResSpecDiscriminator
from tts_zoo_styletts2.discriminators.wavlm import WavLMDiscriminator

SCORE_ATOL = 1e-6  # README 9.1: losses/mpd/*, losses/msd/*, wavlm/wd_out_real


def build_mpd(fs: FixtureSet, weights: str = "stage2") -> MultiPeriodDiscriminator:
    model = MultiPeriodDiscriminator(channels=fs.overrides["mpd_channels"])
    model.load_state_dict(getattr(fs, weights)["net"]["mpd"], strict=True)  # bare keys in both files
    return model.eval()


def build_msd(fs: FixtureSet, weights: str = "stage2") -> MultiResSpecDiscriminator:
    model = MultiResSpecDiscriminator(channels=fs.overrides["msd_channels"])
    model.load_state_dict(getattr(fs, weights)["net"]["msd"], strict=True)
    return model.eval()


def build_wd(fs: FixtureSet, weights: str = "stage2") -> WavLMDiscriminator:
    slm = fs.model_params["slm"]
    torch.manual_seed(0)
    model = WavLMDiscriminator(
        hidden=slm["hidden"], nlayers=slm["nlayers"], initial_channel=slm["initial_channel"],
        random_init_config=tiny_wavlm_config(slm["hidden"], slm["nlayers"]),
    )
    model.load_state_dict(getattr(fs, weights)["net"]["wd"], strict=True)
    return model.eval()


def summary(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.sum(), x.abs().sum(), (x**2).sum()])


def assert_summaries(features, expected, what: str) -> None:
    """[sum, sum|x|, sum x²] per map; relative 1e-5 (2 threads moved these by ~1e-7 relative, README 10)."""
    for i, (maps, exp_maps) in enumerate(zip(features, expected, strict=True)):
        for j, (x, exp) in enumerate(zip(maps, exp_maps, strict=True)):
            worst = ((summary(x) - exp).abs() / exp.abs().clamp(min=1)).max().item()
            assert worst <= 1e-5, f"{what}[{i}][{j}]: relative |Δ| {worst:.3g}"


def test_mpd_matches_reference(fixture_set):
    L = fixture_set.fx["losses"]
    mpd = build_mpd(fixture_set)
    assert isinstance(mpd, interfaces.Discriminator)
    assert sorted(mpd.state_dict()) == sorted(fixture_set.stage2["net"]["mpd"])
    with torch.inference_mode():
        out = mpd(L["y"], L["y_hat"])
    assert isinstance(out, interfaces.DiscriminatorOutput)
    for i in range(5):
        assert_close(out.real_scores[i], L["mpd"]["y_d_rs"][i], SCORE_ATOL, f"losses/mpd/y_d_rs/{i}")
        assert_close(out.fake_scores[i], L["mpd"]["y_d_gs"][i], SCORE_ATOL, f"losses/mpd/y_d_gs/{i}")
    for j in range(len(out.real_features[0])):
        assert_close(out.real_features[0][j], L["mpd"]["fmap_rs_period2"][j], SCORE_ATOL, f"fmap_rs_period2/{j}")
        assert_close(out.fake_features[0][j], L["mpd"]["fmap_gs_period2"][j], SCORE_ATOL, f"fmap_gs_period2/{j}")
    assert [[list(f.shape) for f in maps] for maps in out.real_features] == L["mpd"]["fmap_rs_shapes"]
    assert_summaries(out.real_features, L["mpd"]["fmap_rs_sum_abssum_sqsum"], "mpd fmap_rs")
    assert_summaries(out.fake_features, L["mpd"]["fmap_gs_sum_abssum_sqsum"], "mpd fmap_gs")


def test_msd_matches_reference(fixture_set):
    L = fixture_set.fx["losses"]
    msd = build_msd(fixture_set)
    assert sorted(msd.state_dict()) == sorted(fixture_set.stage2["net"]["msd"])  # the window is not stored
    with torch.inference_mode():
        out = msd(L["y"], L["y_hat"])
    for i in range(3):
        assert_close(out.real_scores[i], L["msd"]["y_d_rs"][i], SCORE_ATOL, f"losses/msd/y_d_rs/{i}")
        assert_close(out.fake_scores[i], L["msd"]["y_d_gs"][i], SCORE_ATOL, f"losses/msd/y_d_gs/{i}")
    assert [[list(f.shape) for f in maps] for maps in out.real_features] == L["msd"]["fmap_rs_shapes"]
    assert_summaries(out.real_features, L["msd"]["fmap_rs_sum_abssum_sqsum"], "msd fmap_rs")
    assert_summaries(out.fake_features, L["msd"]["fmap_gs_sum_abssum_sqsum"], "msd fmap_gs")


def test_stage1_weights_match_reference(fixture_set):
    L, s1 = fixture_set.fx["losses"], fixture_set.fx["stage1_check"]
    mpd, msd, wd = build_mpd(fixture_set, "stage1"), build_msd(fixture_set, "stage1"), build_wd(fixture_set, "stage1")
    with torch.inference_mode():
        mpd_out, msd_out = mpd(L["y"], L["y_hat"]), msd(L["y"], L["y_hat"])
        wd_out = wd.head(fixture_set.fx["wavlm"]["wd_in_real"])
    for i, (x, exp) in enumerate(zip(mpd_out.fake_scores, s1["mpd_y_d_gs"], strict=True)):
        assert_close(x, exp, SCORE_ATOL, f"stage1_check/mpd_y_d_gs/{i}")
    for i, (x, exp) in enumerate(zip(msd_out.fake_scores, s1["msd_y_d_gs"], strict=True)):
        assert_close(x, exp, SCORE_ATOL, f"stage1_check/msd_y_d_gs/{i}")
    assert_close(wd_out, s1["wd"], SCORE_ATOL, "stage1_check/wd")


def test_mpd_pads_to_a_multiple_of_the_period():
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(channels=[2, 2, 2, 2, 2]).eval()
    y = torch.randn(1, 1, 100)  # 100 = 2·50, not a multiple of 3, 7, 11: reflect-padded to 102, 105, 110
    with torch.no_grad():
        out = mpd(y, y)
    assert [f[0].shape[-2:] for f in out.real_features] == [(17, 2), (12, 3), (7, 5), (5, 7), (4, 11)]
    for r, g in zip(out.real_scores, out.fake_scores):
        assert torch.equal(r, g)


def test_wavlm_head_matches_reference(fixture_set):
    W = fixture_set.fx["wavlm"]
    wd = build_wd(fixture_set)
    assert sorted(wd.state_dict()) == sorted(fixture_set.stage2["net"]["wd"])  # WavLM itself is not stored
    with torch.inference_mode():
        for side in ("real", "fake"):
            states = list(W[f"hidden_states_{side}"])  # as transformers returns them: one per layer
            assert_close(wd.head_input(states), W[f"wd_in_{side}"], 0.0, f"wavlm/wd_in_{side}")
            assert_close(wd.head(W[f"wd_in_{side}"]), W[f"wd_out_{side}"], SCORE_ATOL, f"wavlm/wd_out_{side}")


def test_wavlm_runs_on_resampled_waves(fixture_set):
    """24 kHz input → the README 4 resampling → WavLM; real states carry no gradient, generated do."""
    audio = fixture_set.fx["audio"]
    wd = build_wd(fixture_set)
    slm = fixture_set.model_params["slm"]
    with torch.no_grad():
        states = wd.hidden_states(audio["resample_in"])
        direct = wd.slm(input_values=audio["resample_transform"], output_hidden_states=True).hidden_states
    assert len(states) == slm["nlayers"] and states[0].shape[-1] == slm["hidden"]
    # Resampling matches torchaudio to ~6e-8 (README 9.1); WavLM's feature-encoder GroupNorm amplifies it.
    for i, (a, b) in enumerate(zip(states, direct, strict=True)):
        assert_close(a, b, 1e-4, f"hidden state {i}")

    real = audio["resample_in"][:, None]
    fake = (0.5 * real).requires_grad_()
    out = wd(real, fake)
    frames = states[0].shape[1]
    assert out.real_scores[0].shape == out.fake_scores[0].shape == (2, frames)
    assert not out.real_features[0][0].requires_grad and out.fake_features[0][-1].requires_grad
    out.fake_scores[0].sum().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is not None for p in wd.parameters())


def test_wavlm_stays_frozen_and_follows_the_module():
    wd = WavLMDiscriminator(hidden=8, nlayers=2, initial_channel=2, random_init_config=tiny_wavlm_config(8, 2))
    n_head = sum(p.numel() for p in wd.parameters())
    assert n_head == sum(v.numel() for v in wd.state_dict().values())
    wd.train()
    assert wd.training and not wd.slm.training  # WavLM's feature encoder rejects non-leaf input in train mode
    assert not any(p.requires_grad for p in wd.slm.parameters())
    wd.double()
    assert next(wd.slm.parameters()).dtype == torch.float64 == wd.pre.bias.dtype
    wave = torch.randn(1, 1, 4800, dtype=torch.float64, requires_grad=True)
    scores = wd(wave.detach(), wave * 2).fake_scores[0]  # a non-leaf generated wave
    assert scores.dtype == torch.float64 and scores.requires_grad
    with torch.inference_mode():
        assert wd.score(wave.detach()).shape == scores.shape


def test_wavlm_rejects_mismatched_head():
    with pytest.raises(ValueError, match="hidden states"):
        WavLMDiscriminator(hidden=8, nlayers=3, initial_channel=2, random_init_config=tiny_wavlm_config(8, 2))


def test_missing_wavlm_weights_say_what_to_download(tmp_path):
    wd = WavLMDiscriminator(model="tts-zoo-tests/no-such-wavlm", local_files_only=True)  # the LM loads lazily
    assert sum(p.numel() for p in wd.parameters()) > 0
    with pytest.raises(FileNotFoundError) as err:
        wd.slm
    message = str(err.value)
    assert "\n" not in message
    assert "huggingface-cli download tts-zoo-tests/no-such-wavlm" in message and "local directory" in message
    with pytest.raises(FileNotFoundError, match="config.json"):
        WavLMDiscriminator(model=str(tmp_path)).slm


def test_wavlm_loads_a_local_directory(tmp_path):
    import transformers

    torch.manual_seed(0)
    saved = transformers.WavLMModel(transformers.WavLMConfig(**tiny_wavlm_config(8, 2)))
    saved.save_pretrained(tmp_path)
    wd = WavLMDiscriminator(model=str(tmp_path), hidden=8, nlayers=2, initial_channel=2)
    for a, b in zip(wd.slm.state_dict().values(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def period_discriminator_as_image(d, x: torch.Tensor):
    """The reference's op sequence for one period: fold to [B, 1, S/p, p] and run the 2-D convs."""
    b, c, t = x.shape
    if t % d.period:
        x = torch.nn.functional.pad(x, (0, d.period - t % d.period), mode="reflect")
    x, fmap = x.view(b, c, -1, d.period), []
    for conv in d.convs:
        x = torch.nn.functional.leaky_relu(conv(x), 0.1)
        fmap.append(x)
    x = d.conv_post(x)
    return x.flatten(1), [*fmap, x]


def test_mpd_columns_as_sequences_give_the_reference_ops_values_and_gradients(fixture_set):
    """Each period runs its (k, 1) convs as 1-D convs over the B·p columns: scores, feature maps
    (layout included) and the gradients of the weights and of the wave equal the 2-D convs' in float64."""
    torch.manual_seed(0)
    mpd = build_mpd(fixture_set).double().train()
    wave = torch.randn(2, 1, 1001, dtype=torch.float64)  # 1001: not a multiple of any period (reflect pad)
    results = []
    for run in (lambda d, x: d(x), period_discriminator_as_image):
        mpd.zero_grad()
        x = wave.clone().requires_grad_()
        outs = [run(d, x) for d in mpd.discriminators]
        loss = sum((s**2).mean() + sum((f.tanh() * torch.linspace(0, 1, f.shape[-1], dtype=f.dtype)).sum() for f in maps)
                   for s, maps in outs)
        loss.backward()
        results.append((outs, x.grad, [p.grad.clone() for p in mpd.parameters()]))
    (outs, x_grad, p_grads), (ref_outs, ref_x_grad, ref_p_grads) = results
    for (s, maps), (ref_s, ref_maps) in zip(outs, ref_outs, strict=True):
        torch.testing.assert_close(s, ref_s, rtol=1e-12, atol=1e-12)
        for f, ref_f in zip(maps, ref_maps, strict=True):
            assert f.shape == ref_f.shape
            torch.testing.assert_close(f, ref_f, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_grad, ref_x_grad, rtol=1e-10, atol=1e-12)
    for g, ref_g in zip(p_grads, ref_p_grads, strict=True):
        torch.testing.assert_close(g, ref_g, rtol=1e-10, atol=1e-12)
