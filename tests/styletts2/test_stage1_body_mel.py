"""Stage 1's decoder-body mel read-out (model.decoder.mel_head_bins, lambda_body_mel, generator_epoch):
before generator_epoch the waveform generator never runs and only the body learns, from the read-out's
L1; from it the full step adds that term to the reference's losses; the official layout has no head."""

from __future__ import annotations

import pytest
import torch

from tests.styletts2.test_stages import (build, corpus, settle_spectral_norms, snapshot, steps_and_changes,  # noqa: F401
                                        tiny_recipe)
from tts_zoo import registry
from tts_zoo.data.collate import Collater
from tts_zoo.errors import ComponentBuildError, TTSZooError
from tts_zoo.train.data import make_loaders, speech_datasets
from tts_zoo.train.distributed import setup
from tts_zoo.train.optim import StageOptimizer

HEAD = "model.decoder.mel_head_bins=80"


@pytest.fixture(scope="module")
def head_setup(corpus):  # noqa: F811
    torch.set_num_threads(1)
    recipe = tiny_recipe(corpus, HEAD)
    model = build(recipe)
    train_set, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(ref_frames=recipe.data.ref_frames))
    batches.set_epoch(0)
    return recipe, list(loader)


def fresh(recipe, block):
    model = build(recipe)
    stage = registry.build_component(block, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100, setup("cpu"))
    return model, stage, opt


def test_before_generator_epoch_only_the_body_learns_from_its_mel_read_out(head_setup):
    recipe, batches = head_setup
    block = {"component": "styletts2_stage1", "tma_epoch": 0, "lambda_gen": 0.0, "alignment": "ctc",
             "lambda_body_mel": 3.0, "generator_epoch": 1}
    model, stage, opt = fresh(recipe, block)
    calls = []
    model.decoder.generator.register_forward_hook(lambda *_: calls.append(1))
    generator = snapshot(model.decoder.generator)
    results, changed = steps_and_changes(model, stage, opt, batches, epoch=0, steps=2)
    assert not calls and set(results[0]) == {"loss", "body_mel"}
    assert float(results[0]["loss"]) == pytest.approx(3.0 * float(results[0]["body_mel"]), rel=1e-6)
    assert changed == {"text_encoder", "style_encoder", "decoder"}
    assert all(torch.equal(v, generator[k]) for k, v in model.decoder.generator.state_dict().items())
    head = model.decoder.mel_head.weight.detach().clone()
    results, _ = steps_and_changes(model, stage, opt, batches, epoch=1, steps=1)  # from generator_epoch: the full step
    r = results[0]
    assert calls and {"mel", "body_mel", "slm"} <= set(r)  # the tiny model has a (random) WavLM discriminator
    assert float(r["loss"]) == pytest.approx(5.0 * float(r["mel"]) + 3.0 * float(r["body_mel"]) + float(r["slm"]), rel=1e-5)
    assert not torch.equal(head, model.decoder.mel_head.weight)


def test_the_body_mel_loss_falls_over_a_few_dozen_body_only_steps(head_setup):
    recipe, batches = head_setup
    block = {"component": "styletts2_stage1", "tma_epoch": 0, "lambda_gen": 0.0, "alignment": "ctc",
             "lambda_body_mel": 1.0, "generator_epoch": 10}
    model, stage, opt = fresh(recipe, block)
    results, _ = steps_and_changes(model, stage, opt, batches, epoch=0, steps=36)
    first = sum(float(r["body_mel"]) for r in results[:3]) / 3
    last = sum(float(r["body_mel"]) for r in results[-3:]) / 3
    assert last < 0.6 * first, (first, last)


def test_validation_reports_both_mel_losses(head_setup):
    recipe, batches = head_setup
    model, stage, _ = fresh(recipe, {"component": "styletts2_stage1", "lambda_body_mel": 1.0})
    settle_spectral_norms(model, batches[0].mels)  # what training leaves behind
    model.eval()
    with torch.no_grad():
        out = stage.validation_step(model, batches[0], epoch=0)
    assert set(out) == {"mel", "body_mel"} and all(torch.isfinite(v) for v in out.values())


def test_misconfigurations_say_what_to_set(head_setup, corpus):  # noqa: F811
    recipe, _ = head_setup
    with pytest.raises(ComponentBuildError, match="lambda_body_mel > 0"):
        registry.build_component({"component": "styletts2_stage1", "generator_epoch": 2}, "stage")
    plain = tiny_recipe(corpus, "model.decoder.mel_head_bins=0")
    stage = registry.build_component({"component": "styletts2_stage1", "lambda_body_mel": 1.0}, "stage")
    with pytest.raises(TTSZooError, match="mel_head_bins: 80"):
        stage.setup(build(plain), plain, resumed=False)
    # the official layout: no head, no extra keys
    assert not any(k.startswith("decoder.mel_head") for k in build(plain).state_dict())
    with pytest.raises(ValueError, match="mel_head_bins > 0"):
        build(plain).decoder.mel_from_body(torch.zeros(1, 32, 4))
