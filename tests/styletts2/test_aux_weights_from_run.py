"""``text_aligner.weights`` / ``pitch_extractor.weights`` given a tts-zoo checkpoint directory: the
aligner and pitch extractor of an earlier run start a model of other widths (pretrain once, reuse)."""

from __future__ import annotations

import pytest
import torch

from tests.core.test_conformance_builtin import TINY_MODEL
from tests.styletts2.reference import REPO
from tts_zoo import registry
from tts_zoo.checkpoint import read_submodule_state, save_model
from tts_zoo.errors import CheckpointError, MissingWeightsError
from tts_zoo.recipe import load_recipe


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    recipe = load_recipe(REPO / "recipes/demo.yaml", TINY_MODEL)
    torch.manual_seed(1)
    model = registry.build(recipe)
    return save_model(tmp_path_factory.mktemp("run") / "latest", model, recipe), model


def test_a_wider_model_starts_from_the_runs_aligner_and_pitch_extractor(run_checkpoint):
    path, source = run_checkpoint
    wider = [*TINY_MODEL, "model.text_encoder.channels=96", "model.decoder.dim_in=96", "model.decoder.hidden_dim=96",
             f"model.text_aligner.weights={path}", f"model.pitch_extractor.weights={path}"]
    torch.manual_seed(2)  # other random weights: what matches must come from the file
    model = registry.build(load_recipe(REPO / "recipes/demo.yaml", wider))
    for name in ("text_aligner", "pitch_extractor"):
        mine, theirs = getattr(model, name).state_dict(), getattr(source, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert model.text_encoder.state_dict()["embedding.weight"].shape[1] == 96
    assert not torch.equal(model.style_encoder.state_dict()[next(iter(model.style_encoder.state_dict()))],
                           source.style_encoder.state_dict()[next(iter(source.style_encoder.state_dict()))])


def test_a_misshapen_aligner_names_the_keys(run_checkpoint):
    path, _ = run_checkpoint
    with pytest.raises(CheckpointError, match=r"shape mismatch: .*init_cnn"):
        registry.build(load_recipe(REPO / "recipes/demo.yaml",
                                   [*TINY_MODEL, "model.text_aligner.hidden_dim=24", f"model.text_aligner.weights={path}"]))


def test_read_submodule_state_errors(run_checkpoint, tmp_path):
    path, source = run_checkpoint
    state = read_submodule_state(path, "pitch_extractor")
    assert state.keys() == source.pitch_extractor.state_dict().keys()
    with pytest.raises(CheckpointError, match="has no 'vocoder' weights"):
        read_submodule_state(path, "vocoder")
    with pytest.raises(MissingWeightsError, match="no tts-zoo checkpoint here"):
        read_submodule_state(tmp_path / "missing", "text_aligner")
