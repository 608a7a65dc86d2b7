"""StyleTTS 2 fine-tuning (``styletts2_finetune``, the reference's train_finetune.py) from a model that
``tts-zoo import-styletts2 --keep-training-modules`` made of a fixture set's official checkpoint, on
the stage tests' tiny corpus: losses composed as the reference composes them, the aligner and text
encoder trained with the TMA losses while the pitch extractor (and the diffusion before diff_epoch)
stay fixed, the shipped recipes train from such a model and validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tts_zoo import registry
from tts_zoo.checkpoint import load_checkpoint, load_model, load_state_strict
from tts_zoo.cli import main
from tts_zoo.data.collate import Collater
from tts_zoo.recipe import load_recipe
from tts_zoo.train.data import make_loaders, speech_datasets
from tts_zoo.train.distributed import setup
from tts_zoo.train.loop import Trainer
from tts_zoo.train.optim import StageOptimizer
from tts_zoo_styletts2.commands import import_reference_model
from tests.styletts2.reference import FIXTURES, REPO, tiny_wavlm_config
from tests.styletts2.test_stages import assert_finite, corpus, steps_and_changes  # noqa: F401 (corpus: a fixture)

RECIPE = REPO / "recipes" / "libritts_finetune.yaml"
TRAINED = {"text_encoder", "text_aligner", "plbert", "predictor", "predictor_encoder", "style_encoder", "decoder",
           "mpd", "msd"}
_IMPORTED: dict[str, Path] = {}


@pytest.fixture
def imported(fixture_set, tmp_path_factory) -> Path:
    """The fixture set's stage-2 checkpoint imported with its training modules, once per session."""
    if fixture_set.name not in _IMPORTED:
        out = tmp_path_factory.mktemp("finetune") / fixture_set.name
        report = import_reference_model(FIXTURES / f"{fixture_set.name}.yml",
                                        FIXTURES / fixture_set.name / "epoch_2nd_00003.pth", out, keep_training_modules=True)
        assert report["text_aligner"] == report["wd"] == "loaded", report
        _IMPORTED[fixture_set.name] = out
    return _IMPORTED[fixture_set.name]


def finetune_recipe(model_dir: Path, corpus: Path, *extra: str):
    """recipes/libritts_finetune.yaml with the imported model's own model block (its WavLM a random tiny
    one of the head's widths), the tiny corpus and short clips."""
    block = yaml.safe_load((model_dir / "recipe.yaml").read_text())["model"]
    slm = block["slm_discriminator"]
    slm["random_init_config"] = tiny_wavlm_config(slm["hidden"], slm["nlayers"])
    return load_recipe(RECIPE, [f"model={json.dumps(block)}", f"train.init_from={model_dir}",
                                f"data.train={corpus}/train.jsonl", f"data.val={corpus}/val.jsonl", "data.batch_size=2",
                                "data.max_frames=80", "data.num_workers=0", *extra])


def start(recipe):
    """The model as train.init_from leaves it, the stage set up, its optimizer and the training batches."""
    torch.set_num_threads(1)
    model = registry.build(recipe)
    load_state_strict(model, load_checkpoint(recipe.train.init_from).state_dict, recipe.train.init_from)
    stage = registry.build_component(recipe.train.stages[0], "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100,
                         setup("cpu"))
    train_set, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(ref_frames=recipe.data.ref_frames))
    batches.set_epoch(0)
    return model, stage, opt, next(iter(loader))


def train(recipe, epoch: int, steps: int):
    """``steps`` steps on one batch → (results, modules whose parameters changed, model)."""
    model, stage, opt, batch = start(recipe)
    results, changed = steps_and_changes(model, stage, opt, [batch], epoch, steps)
    return results, changed, model


def test_finetuning_trains_the_aligner_and_text_encoder_with_the_tma_losses(imported, corpus):
    # epoch 0 < diff_epoch: adversarial and TMA losses, no diffusion yet; a larger lr so that 2 steps show a trend
    results, changed, _ = train(finetune_recipe(imported, corpus, "train.optimizer.lr=0.001"), epoch=0, steps=3)
    assert_finite(results, set())
    r = results[0]
    assert set(r) == {"loss", "mel", "gen", "disc", "slm", "f0", "norm", "ce", "dur", "s2s", "mono"}
    expected = 5 * r["mel"] + r["gen"] + r["slm"] + r["f0"] + r["norm"] + 20 * r["ce"] + r["dur"] + r["s2s"] + r["mono"]
    assert float(r["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert changed == TRAINED  # not the pitch extractor, the diffusion (before diff_epoch) or the WavLM head
    s2s = [float(x["s2s"]) for x in results]
    assert s2s[2] < s2s[1] < s2s[0]  # the aligner learns to read the batch's text


def test_from_diff_and_joint_epochs_the_diffusion_and_slm_adversarial_parts_train_too(imported, corpus):
    stage = ("train.stages=[{component: styletts2_finetune, diff_epoch: 1, joint_epoch: 1, slmadv_min_len: 40, "
             "slmadv_max_len: 60, slmadv_batch_percentage: 1.0, slmadv_iter: 1}]")
    results, changed, model = train(finetune_recipe(imported, corpus, stage), epoch=1, steps=1)
    assert_finite(results, {"loss", "diff", "sty", "slm_gen", "slm_disc", "s2s", "mono"})
    assert changed == TRAINED | {"diffusion", "slm_discriminator"}
    assert model.diffusion.sigma_data_updates == 1  # the batch's σ_d, as in stage 2


def test_parameter_groups_follow_the_reference(imported, corpus):
    recipe = finetune_recipe(imported, corpus)
    model, stage, opt, _ = start(recipe)
    cfg = recipe.train.optimizer
    assert (cfg.lr, cfg.bert_lr, cfg.ft_lr) == (1e-4, 1e-5, 1e-4)  # config_ft.yml
    groups = {name: o.param_groups[0] for name, o in opt.optimizers.items()}
    assert "pitch_extractor" not in groups
    assert groups["bert"]["betas"] == (0.9, 0.99) and groups["bert"]["lr"] == 1e-5 and groups["bert"]["weight_decay"] == 0.01
    for name in ("decoder", "style_encoder"):  # train_finetune.py resets their betas; ft_lr
        assert groups[name]["betas"] == (0.0, 0.99) and groups[name]["lr"] == 1e-4
    for name in ("text_aligner", "text_encoder", "predictor", "mpd"):  # wrapped in the never-stepped OneCycleLR
        assert groups[name]["betas"] == (0.85, 0.99) and groups[name]["lr"] == 1e-4
    ctc = registry.build_component({"component": "styletts2_finetune", "alignment": "ctc"}, "stage")
    assert "text_aligner" not in ctc.parameter_groups(model, cfg) and "text_encoder" in ctc.parameter_groups(model, cfg)
    with pytest.raises(ValueError, match="styletts2_finetune needs the model's text_aligner, pitch_extractor"):
        stage.setup(load_model(imported), recipe, resumed=False)  # an inference model has neither


def test_the_recipe_fine_tunes_an_imported_model(imported, corpus, tmp_path):
    recipe = finetune_recipe(imported, corpus, "train.stages.0.max_steps=2")
    result = Trainer(recipe, tmp_path, progress=False, tensorboard=False).run()
    assert result.stopped == "finished" and result.state.step == 2
    start_state = load_checkpoint(imported).state_dict
    tuned = load_checkpoint(result.checkpoint).state_dict
    assert start_state.keys() == tuned.keys()

    def moved(prefix):
        return any(not torch.equal(v, start_state[k]) for k, v in tuned.items() if k.startswith(prefix))
    assert moved("text_aligner.") and moved("text_encoder.") and moved("decoder.")
    assert not moved("pitch_extractor.") and not moved("diffusion.")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (val,) = [row for row in rows if row["split"] == "val"]  # stage 2's validation after the stage's last step
    assert {"mel", "dur", "f0"} <= set(val) and all(torch.isfinite(torch.tensor(val[k])) for k in ("mel", "dur", "f0"))


@pytest.mark.parametrize("name", ["libritts_finetune", "ljspeech_finetune"])
def test_the_finetune_recipes_validate_with_the_reference_settings(name, imported, capsys):
    path = REPO / "recipes" / f"{name}.yaml"
    main(["validate", str(path), f"train.init_from={imported}"])  # raises SystemExit on a problem
    assert capsys.readouterr().err.startswith(f"ok {path}")
    recipe = load_recipe(path)
    assert recipe.train.init_from == "models/libritts_full"
    assert "--keep-training-modules --out models/libritts_full" in path.read_text().splitlines()[0]
    assert (recipe.data.batch_size, recipe.data.max_frames) == (8, 400)  # config_ft.yml: batch_size, max_len
    assert recipe.model["multispeaker"] and recipe.model["slm_discriminator"]["component"] == "wavlm"
    (stage,) = recipe.train.stages
    assert stage["component"] == "styletts2_finetune"
    assert (stage["epochs"], stage["diff_epoch"], stage["joint_epoch"], stage["slmadv_iter"]) == (50, 10, 30, 10)
