"""Parity of PL-BERT + bert_encoder with the reference, and its loaders (fixtures README sections 3
"Aux files", 5, 6, 9.1)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo import interfaces
from tts_zoo.errors import CheckpointError
from tts_zoo_styletts2.plbert import PLBert


def config(fs: FixtureSet) -> dict:
    return fs.aux_config("PLBERT_dir")["model_params"]


def build(fs: FixtureSet, weights: str = "stage2", **kwargs) -> PLBert:
    model = PLBert(**config(fs), output_dim=fs.model_params["hidden_dim"], **kwargs)
    state = fs.stage2_state if weights == "stage2" else fs.stage1_state
    model.bert.load_state_dict(state("bert"), strict=True)
    model.bert_encoder.load_state_dict(state("bert_encoder"), strict=True)
    return model.eval()


@pytest.mark.parametrize("block, tokens_key", [("infer_fixed", "tokens"), ("batch", "texts")])
def test_bert_dur_and_d_en_match_reference(fixture_set, block, tokens_key):
    b = fixture_set.fx[block]
    model = build(fixture_set)
    assert isinstance(model, interfaces.LanguageModel)
    assert model.hidden_size == config(fixture_set)["hidden_size"]
    with torch.inference_mode():
        bert_dur = model(b[tokens_key], (~b["text_mask"]).int())
        d_en = model.project(bert_dur)
    assert_close(bert_dur, b["bert_dur"], 2e-5, f"{block}/bert_dur")
    assert_close(d_en, b["d_en"], 1e-5, f"{block}/d_en")


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_both_attention_kernels_meet_tolerance(fixture_set, attn):
    """The fixtures used sdpa; eager attention (other rounding) stays within the tolerance too."""
    b = fixture_set.fx["batch"]
    with torch.inference_mode():
        bert_dur = build(fixture_set, attn_implementation=attn)(b["texts"], (~b["text_mask"]).int())
    assert_close(bert_dur, b["bert_dur"], 2e-5, f"batch/bert_dur ({attn})")


def test_stage1_weights_match_reference(fixture_set):
    b, s1 = fixture_set.fx["batch"], fixture_set.fx["stage1_check"]
    model = build(fixture_set, "stage1")
    with torch.inference_mode():
        bert = model(b["texts"], (~b["text_mask"]).int())
        projected = model.project(s1["bert"])
    assert_close(bert, s1["bert"], 2e-5, "stage1_check/bert")
    assert_close(projected.transpose(-1, -2), s1["bert_encoder"], 1e-5, "stage1_check/bert_encoder")


def assert_same_weights(model: PLBert, expected: dict) -> None:
    got = model.bert.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def test_official_plbert_directory_gives_the_stage2_weights(fixture_set):
    plbert_dir = str(fixture_set.path(fixture_set.config["PLBERT_dir"]))
    hidden = fixture_set.model_params["hidden_dim"]
    expected = fixture_set.stage2_state("bert")
    assert_same_weights(PLBert.from_directory(plbert_dir, output_dim=hidden), expected)
    assert_same_weights(PLBert(**config(fixture_set), output_dim=hidden, weights=plbert_dir), expected)


def test_transformers_directory_loads(fixture_set, tmp_path):
    source = build(fixture_set)
    source.bert.save_pretrained(tmp_path)
    model = PLBert.from_directory(str(tmp_path), output_dim=fixture_set.model_params["hidden_dim"])
    assert_same_weights(model, fixture_set.stage2_state("bert"))


def test_position_ids_of_older_checkpoints_are_accepted(fixture_set):
    state = dict(fixture_set.stage2_state("bert"))
    state["embeddings.position_ids"] = torch.arange(config(fixture_set)["max_position_embeddings"])[None]
    model = PLBert(**config(fixture_set), output_dim=fixture_set.model_params["hidden_dim"])
    model.bert.load_state_dict(state, strict=True)
    whole = {f"bert.{k}": v for k, v in state.items()}
    whole.update({f"bert_encoder.{k}": v for k, v in fixture_set.stage2_state("bert_encoder").items()})
    model.load_state_dict(whole, strict=True)
    assert_same_weights(model, fixture_set.stage2_state("bert"))


def test_missing_directory_says_what_to_download(tmp_path):
    missing = tmp_path / "Utils" / "PLBERT"
    with pytest.raises(CheckpointError) as err:
        PLBert(weights=str(missing))
    message = str(err.value)
    assert "\n" not in message
    assert str(missing) in message and "Utils/PLBERT" in message and "yl4579/StyleTTS2" in message


def test_mismatched_config_names_the_keys(fixture_set):
    cfg = dict(config(fixture_set), embedding_size=config(fixture_set)["embedding_size"] + 2)
    with pytest.raises(CheckpointError, match=r"size mismatch for embeddings\.word_embeddings\.weight"):
        PLBert(**cfg, weights=str(fixture_set.path(fixture_set.config["PLBERT_dir"])))
    state = dict(fixture_set.stage2_state("bert"))
    del state["pooler.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*pooler\.weight"):
        PLBert(**config(fixture_set)).bert.load_state_dict(state, strict=True)
