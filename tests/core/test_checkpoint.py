"""The tts-zoo checkpoint format: self-describing, no pickle, atomic, strict."""

import random

import numpy as np
import pytest
import torch

from tts_zoo.checkpoint import (
    load_checkpoint, load_state_strict, restore_rng_states, rng_states, save_checkpoint, save_model, load_model,
)
from tts_zoo.errors import CheckpointError
from tts_zoo.recipe import load_recipe


def test_roundtrip_of_weights_recipe_info_and_nested_training_state(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    training = {"optimizers": {"all": opt.state_dict()}, "step": 7, "rng": rng_states(), "stage": "stage1"}
    path = save_checkpoint(tmp_path / "step_7", model.state_dict(), "name: x\n", {"note": "ünïcode"}, training)
    ckpt = load_checkpoint(path, with_training=True)
    assert ckpt.recipe_yaml == "name: x\n" and ckpt.info["note"] == "ünïcode" and "torch" in ckpt.info["versions"]
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v)
    restored = torch.optim.AdamW(model.parameters(), lr=1e-3)
    restored.load_state_dict(ckpt.training["optimizers"]["all"])
    for a, b in zip(restored.state_dict()["state"].values(), opt.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    assert ckpt.training["step"] == 7 and ckpt.training["stage"] == "stage1"
    # RNG states come back exactly: the same draws after restoring
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    states = rng_states()
    first = (torch.rand(3), np.random.rand(2), random.random())
    restore_rng_states(load_checkpoint(save_checkpoint(tmp_path / "rng", {}, "", {}, {"rng": states}), with_training=True).training["rng"])
    second = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_overwrite_is_atomic_and_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path / "latest", {"w": torch.zeros(2)}, "a", {})
    save_checkpoint(tmp_path / "latest", {"w": torch.ones(2)}, "b", {})
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
    assert load_checkpoint(tmp_path / "latest").state_dict["w"].tolist() == [1.0, 1.0]

    class Boom(dict):
        def items(self):
            raise KeyboardInterrupt  # killed while writing

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "latest", Boom(), "c", {})
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
    assert load_checkpoint(tmp_path / "latest").recipe_yaml == "b"


def test_unreadable_and_foreign_files_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no tts-zoo checkpoint here"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path)


def test_strict_loading_names_missing_unexpected_and_misshapen_keys():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError) as e:
        load_state_strict(model, {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}, "f.pth")
    assert str(e.value) == (
        "f.pth: does not match Linear — missing keys: bias; unexpected keys: extra; "
        "shape mismatch: weight (file [2, 4], model [2, 3])"
    )


def test_a_model_rebuilds_from_its_checkpoint_alone(tmp_path, toy_registry):
    recipe = load_recipe({"name": "toy", "model": {"component": "toymodel", "hidden": 3, "vocoder": {"component": "toyvoc"}}},
                         registry=toy_registry)
    model = toy_registry.build(recipe)
    model.register_buffer("w", torch.arange(3.0))
    save_model(tmp_path / "m", model, recipe, registry=toy_registry)
    with pytest.raises(CheckpointError, match="unexpected keys: w"):  # a rebuilt toy model has no such buffer
        load_model(tmp_path / "m", registry=toy_registry)
    model2 = toy_registry.build(recipe)
    save_model(tmp_path / "m2", model2, recipe, registry=toy_registry)
    rebuilt = toy_registry.build(str(tmp_path / "m2"))
    assert rebuilt.hidden == 3 and rebuilt.vocoder.rates == [10, 6] and not rebuilt.training
