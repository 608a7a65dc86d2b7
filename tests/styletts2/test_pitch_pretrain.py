"""styletts2_pitch_pretrain: the JDC pitch extractor learns F0 and voicing from cached DSP labels.

Tiny JDC (the widths of recipes/demo.yaml), gliding harmonic tones with silent gaps labelled by the
``dsp_pitch`` component (DIO: fast). Losses fall and the validation F0 error drops within a few dozen
steps; the stage brings its own data (the speech manifests with labels) through the training loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tts_zoo import registry
from tts_zoo.data.collate import Collater
from tts_zoo.data.f0_labels import F0Labels
from tts_zoo.data.manifest import Utterance, write_manifest
from tts_zoo.errors import TTSZooError
from tts_zoo.recipe import load_recipe
from tts_zoo.train.distributed import setup
from tts_zoo.train.optim import StageOptimizer
from tts_zoo_styletts2.pitch.jdc import JDCNet
from tests.styletts2.reference import REPO

pytest.importorskip("pyworld")
SR = 24000
TRACKER = {"component": "dsp_pitch", "method": "dio"}
PHONEMES = "ðɪs ɪz ə tˈɛst ."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Ten 1.0-1.9 s tones gliding between random pitches in 90-260 Hz, each with a 150 ms silent gap."""
    root = tmp_path_factory.mktemp("pitch_corpus")
    rng = np.random.default_rng(0)
    records = []
    for i in range(10):
        seconds = 1.0 + 0.1 * i
        t = np.arange(int(seconds * SR)) / SR
        lo, hi = rng.uniform(90, 260, 2)
        phase = 2 * np.pi * np.cumsum(lo + (hi - lo) * t / seconds) / SR
        wave = sum(np.sin(k * phase) / k for k in range(1, 12))
        wave = 0.3 * wave / np.abs(wave).max()
        wave[int(0.4 * SR): int(0.55 * SR)] = 0
        soundfile.write(root / f"u{i}.wav", wave, SR)
        records.append(Utterance(f"u{i}", str(root / f"u{i}.wav"), "t", PHONEMES, "ab"[i % 2], seconds, SR))
    write_manifest(root / "train.jsonl", records[:8])
    write_manifest(root / "val.jsonl", records[8:])
    return root


def recipe_for(corpus: Path, *extra: str):
    return load_recipe(REPO / "recipes/demo.yaml", [
        f"data.train={corpus}/train.jsonl", f"data.val={corpus}/val.jsonl", "data.batch_size=4", "data.num_workers=0",
        f"data.f0_labels={json.dumps(TRACKER)}",
        "train.optimizer.betas=[0.0, 0.99]",  # the reference's AdamW betas, not the demo's
        *extra])


class PitchOnly(torch.nn.Module):
    """The part of the model the stage trains (the demo recipe's JDC widths)."""

    def __init__(self, recipe):
        super().__init__()
        block = {k: v for k, v in recipe.model["pitch_extractor"].items() if k != "component"}
        self.pitch_extractor = JDCNet(**block)


@pytest.fixture(scope="module")
def batches(corpus):
    """Two training batches and one validation batch of the corpus, with labels (via the stage's own data)."""
    torch.set_num_threads(1)
    recipe = recipe_for(corpus)
    stage = registry.build_component({"component": "styletts2_pitch_pretrain"}, "stage")
    model = registry.build(recipe)
    data = stage.datasets(model, recipe)
    collate = Collater()
    train = [collate([data.train_set[j] for j in range(i, i + 4)]) for i in (0, 4)]
    return recipe, train, collate([data.val_set[j] for j in range(len(data.val_set))])


def validate(stage, model, batch) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = stage.validation_step(model, batch, 0)
    model.train()
    return {k: float(v) for k, v in out.items()}


def test_losses_fall_and_f0_error_drops(batches):
    recipe, train, val = batches
    torch.manual_seed(0)
    model = PitchOnly(recipe)
    stage = registry.build_component({"component": "styletts2_pitch_pretrain", "crop_frames": 64}, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100,
                         setup("cpu"))
    before = validate(stage, model, val)
    losses = []
    for i in range(60):
        opt.zero_grad()
        result = stage.train_step(model, train[i % 2], opt)
        opt.backward(result["loss"], result)
        opt.step()
        losses.append({k: float(v.detach()) for k, v in result.items()})
    after = validate(stage, model, val)
    first, last = (np.mean([r["f0"] for r in losses[s]]) for s in (slice(0, 5), slice(-5, None)))
    assert last < first / 5, (first, last)  # smooth-L1 in Hz: ~130 → < 26
    assert np.mean([r["voicing"] for r in losses[-5:]]) < np.mean([r["voicing"] for r in losses[:5]]) / 2
    assert before["gpe"] > 0.9 and after["gpe"] < 0.1, (before, after)  # gross errors on voiced frames
    assert after["cents"] < 150 < before["cents"], (before, after)
    assert after["voicing_acc"] > 0.95 > before["voicing_acc"], (before, after)
    assert after["f0"] < before["f0"] / 5


def test_stage_data_and_masks(corpus, batches):
    recipe, train, _ = batches
    labels = F0Labels(corpus / "f0", registry.build_component(TRACKER, kind="pitch_extractor"))
    assert labels.dir.parent == corpus / "f0" and len(list(labels.dir.glob("*.npy"))) == 10  # beside the manifest
    batch = train[0]
    assert batch.f0.shape == (4, batch.mels.shape[-1]) and (batch.f0 > 0).float().mean() > 0.5
    stage = registry.build_component({"component": "styletts2_pitch_pretrain", "crop_frames": 64}, "stage")
    missing = batch._replace(f0=torch.full_like(batch.f0, float("nan")))
    assert stage.train_step(PitchOnly(recipe), missing, None) == {}  # every label missing: nothing to learn
    model = PitchOnly(recipe)
    part = batch.f0.clone()
    part[1] = float("nan")  # one item's labels missing: still a finite loss from the others
    result = stage.train_step(model, batch._replace(f0=part), None)
    assert torch.isfinite(result["loss"])


def test_setup_checks_and_head_scaling(corpus, batches):
    recipe = batches[0]
    stage = registry.build_component({"component": "styletts2_pitch_pretrain"}, "stage")
    no_labels = load_recipe(REPO / "recipes/demo.yaml", [f"data.train={corpus}/train.jsonl", "data.f0_labels=null"])
    with pytest.raises(TTSZooError, match="data.f0_labels"):
        stage.setup(PitchOnly(recipe), no_labels, resumed=False)
    for resumed, extra, scaled in ((False, (), True), (True, (), False), (False, ("train.init_from=ckpt",), False)):
        torch.manual_seed(0)
        model = PitchOnly(recipe)
        w = model.pitch_extractor.classifier.weight.detach().clone()
        stage.setup(model, recipe_for(corpus, *extra), resumed=resumed)
        factor = 30.0 if scaled else 1.0
        assert torch.allclose(model.pitch_extractor.classifier.weight, w * factor)


def test_runs_in_the_training_loop(corpus, tmp_path):
    from tts_zoo.train.loop import Trainer

    torch.set_num_threads(1)
    recipe = recipe_for(corpus, "train.stages=[{component: styletts2_pitch_pretrain, epochs: 1, crop_frames: 64}]")
    result = Trainer(recipe, tmp_path / "run", progress=False, tensorboard=False).run()
    assert result.stopped == "finished" and result.state.step == 2  # 8 clips / batch 4
    lines = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    val = [m for m in lines if m.get("split") == "val"]
    assert val and {"f0", "voicing", "gpe", "cents", "voicing_acc"} <= set(val[-1])
