"""Parity of the StyleTTS 2 style encoders (acoustic and prosodic) with the reference (fixtures
README sections 2.2, 3 "Parametrisations", 9.1)."""

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo import interfaces
from tts_zoo_styletts2.style_encoder import StyleEncoder


def new(fs: FixtureSet) -> StyleEncoder:
    mp = fs.model_params
    # The reference ignores model_params.max_conv_dim and passes hidden_dim (README 2.2).
    return StyleEncoder(dim_in=mp["dim_in"], style_dim=mp["style_dim"], max_conv_dim=mp["hidden_dim"])


def build(fs: FixtureSet, module: str, weights: str = "stage2") -> StyleEncoder:
    model = new(fs)
    state = fs.stage2_state(module) if weights == "stage2" else fs.stage1_state(module)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("module", ["style_encoder", "predictor_encoder"])
def test_style_matches_reference(fixture_set, module):
    fx = fixture_set.fx
    model = build(fixture_set, module)
    assert isinstance(model, interfaces.StyleEncoder)
    assert model.style_dim == fixture_set.model_params["style_dim"]
    with torch.inference_mode():
        out = model(fx["ref_mel"][:, None])
    assert_close(out, fx[f"{module}_out"], 1e-6, f"{module}_out")


@pytest.mark.parametrize("module", ["style_encoder", "predictor_encoder"])
def test_stage1_weights_match_reference(fixture_set, module):
    with torch.inference_mode():
        out = build(fixture_set, module, "stage1")(fixture_set.fx["ref_mel"][:, None])
    assert_close(out, fixture_set.fx["stage1_check"][module], 1e-6, f"stage1_check/{module}")


def test_spectral_norm_uses_stored_vectors_in_eval_and_iterates_in_train(fixture_set):
    """Eval: the stored u, v are used as they are (no power iteration, nothing updated).
    Train: one power iteration per forward (Miyato et al. 2018, Alg. 1) updates them in place.

    A trained u may already be the power iteration's fixed point (then one iteration leaves it as it
    is, e.g. for a 1 → 6-channel conv), so the test starts train mode from a u that is not."""
    model = build(fixture_set, "style_encoder")
    mel = fixture_set.fx["ref_mel"][:, None]
    conv = model.shared[0]
    u = conv.weight_u.clone()
    with torch.no_grad():
        model(mel)
    assert torch.equal(conv.weight_u, u)
    assert_close(conv.weight, conv.weight_orig / _sigma(conv, u, conv.weight_v), 1e-6, "weight from the stored u, v")
    model.train()
    start = torch.nn.functional.normalize(torch.randn(u.shape, generator=torch.Generator().manual_seed(0)), dim=0)
    conv.weight_u.copy_(start)
    with torch.no_grad():
        model(mel)
    w = conv.weight_orig.flatten(1)
    v = torch.nn.functional.normalize(w.t() @ start, dim=0, eps=1e-12)  # torch's spectral_norm eps
    expected = torch.nn.functional.normalize(w @ v, dim=0, eps=1e-12)
    assert_close(conv.weight_u, expected, 1e-6, "u after one power iteration")
    assert not torch.allclose(conv.weight_u, start, atol=1e-3)  # a random start is not a singular vector


def _sigma(conv: torch.nn.Module, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The spectral-norm estimate u·(W v) from stored vectors."""
    return torch.dot(u, conv.weight_orig.flatten(1) @ v)


def test_batch_items_are_independent(fixture_set):
    mel = fixture_set.fx["ref_mel"][:, None]
    model = build(fixture_set, "style_encoder")
    with torch.inference_mode():
        both = model(torch.cat([mel, mel.flip(-1)]))
        first = model(mel)
    assert both.shape == (2, fixture_set.model_params["style_dim"])
    assert_close(both[:1], first, 1e-6, "batch of 2 vs 1")


def test_strict_load_names_missing_and_misshapen_keys(fixture_set):
    state = dict(fixture_set.stage2_state("style_encoder"))
    del state["unshared.bias"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*unshared\.bias"):
        new(fixture_set).load_state_dict(state, strict=True)
    mp = fixture_set.model_params
    other = StyleEncoder(dim_in=mp["dim_in"], style_dim=mp["style_dim"] + 1, max_conv_dim=mp["hidden_dim"])
    with pytest.raises(RuntimeError, match=r"size mismatch for unshared\.weight"):
        other.load_state_dict(fixture_set.stage2_state("style_encoder"), strict=True)
