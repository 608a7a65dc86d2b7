"""Parity of the StyleTTS 2 text encoder with the reference (fixtures README sections 5, 6, 9.1)."""

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo import interfaces
from tts_zoo_styletts2.text_encoder import TextEncoder


def build(fs: FixtureSet, weights: str = "stage2") -> TextEncoder:
    mp = fs.model_params
    model = TextEncoder(channels=mp["hidden_dim"], depth=mp["n_layer"], n_symbols=mp["n_token"])
    state = fs.stage2_state("text_encoder") if weights == "stage2" else fs.stage1_state("text_encoder")
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("block, tokens_key", [("infer_fixed", "tokens"), ("batch", "texts")])
def test_t_en_matches_reference(fixture_set, block, tokens_key):
    b = fixture_set.fx[block]
    model = build(fixture_set)
    assert isinstance(model, interfaces.TextEncoder)
    with torch.inference_mode():
        out = model(b[tokens_key], b["input_lengths"], b["text_mask"])
    assert_close(out, b["t_en"], 5e-6, f"{block}/t_en")


def test_stage1_weights_match_reference(fixture_set):
    b = fixture_set.fx["batch"]
    with torch.inference_mode():
        out = build(fixture_set, "stage1")(b["texts"], b["input_lengths"], b["text_mask"])
    assert_close(out, fixture_set.fx["stage1_check"]["text_encoder"], 5e-6, "stage1_check/text_encoder")


def test_padding_is_zero_and_does_not_leak(fixture_set):
    """A padded item gives zeros past its length and the same features as when it runs alone."""
    b = fixture_set.fx["batch"]
    model = build(fixture_set)
    lengths, mask = b["input_lengths"], b["text_mask"]
    i = int(lengths.argmin())
    n = int(lengths[i])
    assert n < b["texts"].shape[1], "the fixture batch should contain a padded item"
    with torch.inference_mode():
        out = model(b["texts"], lengths, mask)
        alone = model(b["texts"][i : i + 1, :n], lengths[i : i + 1], mask[i : i + 1, :n])
    assert out[i, :, n:].abs().max() == 0
    assert_close(out[i : i + 1, :, :n], alone, 5e-6, "padded item vs alone")


def test_strict_load_names_missing_and_misshapen_keys(fixture_set):
    mp = fixture_set.model_params
    model = TextEncoder(channels=mp["hidden_dim"], depth=mp["n_layer"], n_symbols=mp["n_token"])
    state = dict(fixture_set.stage2_state("text_encoder"))
    del state["cnn.0.1.gamma"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*cnn\.0\.1\.gamma"):
        model.load_state_dict(state, strict=True)
    wider = TextEncoder(channels=mp["hidden_dim"] + 2, depth=mp["n_layer"], n_symbols=mp["n_token"])
    with pytest.raises(RuntimeError, match=r"size mismatch for embedding\.weight"):
        wider.load_state_dict(fixture_set.stage2_state("text_encoder"), strict=True)
