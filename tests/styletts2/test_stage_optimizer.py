"""What StyleTTS 2's stages hand the loop's optimizer, and σ_d in stage 2: the reference's effective
AdamW betas per group (its never-stepped OneCycleLR), the batch's σ_d in every stage-2 step although
the diffusion runs in eval mode, and a skipped (non-finite) stage-2 step that changes nothing — no
weight, no discriminator update, no σ_d estimate."""

from __future__ import annotations

import pytest
import torch

from tests.styletts2.test_stages import build, corpus, settle_spectral_norms, setup_once, snapshot  # noqa: F401
from tts_zoo import registry
from tts_zoo.recipe import OptimizerConfig
from tts_zoo.train.distributed import setup
from tts_zoo.train.optim import NonFiniteStep, StageOptimizer

STAGE2 = {"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 1}


def optimizer_for(setup_once, block: dict, **settings) -> StageOptimizer:
    _, model, _ = setup_once
    config = OptimizerConfig(**settings)  # the recipes' defaults unless given
    stage = registry.build_component(block, "stage")
    return StageOptimizer(model, stage.parameter_groups(model, config), config, 10, setup("cpu"))


def betas(opt: StageOptimizer) -> dict[str, tuple[float, float]]:
    return {name: tuple(o.param_groups[0]["betas"]) for name, o in opt.optimizers.items()}


def test_the_reference_effective_betas_per_group(setup_once):
    stage1 = betas(optimizer_for(setup_once, {"component": "styletts2_stage1"}))
    # train_first.py: every module's AdamW is wrapped in OneCycleLR and keeps its beta1 of 0.85
    assert stage1 == {name: (0.85, 0.99) for name in
                      ("text_encoder", "style_encoder", "decoder", "text_aligner", "mpd", "msd")}
    stage2 = betas(optimizer_for(setup_once, STAGE2))
    # train_second.py then resets PL-BERT to (0.9, 0.99) and the decoder / acoustic style encoder to (0.0, 0.99)
    assert stage2 == {"bert": (0.9, 0.99), "bert_encoder": (0.85, 0.99), "predictor": (0.85, 0.99),
                      "predictor_encoder": (0.85, 0.99), "diffusion": (0.85, 0.99), "style_encoder": (0.0, 0.99),
                      "decoder": (0.0, 0.99), "mpd": (0.85, 0.99), "msd": (0.85, 0.99),
                      "slm_discriminator": (0.85, 0.99)}


def test_the_nominal_or_the_recipes_betas_are_one_key_away(setup_once):
    nominal = betas(optimizer_for(setup_once, STAGE2, reference_onecycle_beta1=False))
    assert nominal.pop("bert") == (0.9, 0.99) and set(nominal.values()) == {(0.0, 0.99)}
    explicit = betas(optimizer_for(setup_once, STAGE2, betas=(0.9, 0.98)))
    assert explicit.pop("bert") == (0.9, 0.99) and set(explicit.values()) == {(0.9, 0.98)}
    # recipes/demo.yaml sets its own betas: every group keeps them
    recipe, _, _ = setup_once
    assert recipe.train.optimizer.betas == (0.9, 0.99)


def test_a_stage_1_learning_rate_of_its_own(setup_once):
    def lrs(opt):
        return {name: o.param_groups[0]["lr"] for name, o in opt.optimizers.items()}

    default = lrs(optimizer_for(setup_once, {"component": "styletts2_stage1"}, lr=3e-4))
    assert set(default.values()) == {3e-4}
    own = lrs(optimizer_for(setup_once, {"component": "styletts2_stage1", "lr": 2e-3}, lr=3e-4))
    assert own.keys() == default.keys() and set(own.values()) == {2e-3}


def stage2_on(setup_once):
    recipe, _, batches = setup_once
    model = build(recipe)
    settle_spectral_norms(model, batches[0].mels)
    stage = registry.build_component(STAGE2, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 10,
                         setup("cpu"))
    opt.epoch = opt.global_step = 0
    return model, stage, opt, batches


def test_every_stage2_step_uses_its_batchs_sigma_data(setup_once, monkeypatch):
    model, stage, opt, batches = stage2_on(setup_once)
    diffusion = model.diffusion
    seen = []
    scalings = diffusion.scalings
    monkeypatch.setattr(diffusion, "scalings", lambda *a, **k: (seen.append((diffusion.training, diffusion.current_sigma_data)),
                                                                scalings(*a, **k))[1])
    torch.manual_seed(1)
    estimates = []
    for step, batch in enumerate(batches[:2]):
        stage._set_modes(model)
        with torch.no_grad():  # the batch's target styles, as the step computes them (eval-mode encoders)
            acoustic, prosodic = stage._global_styles(model, batch)
            estimates.append(float(torch.cat([acoustic, prosodic], dim=-1).std(dim=-1).mean()))
        seen.clear()
        opt.global_step = step
        opt.commit()
        assert stage.train_step(model, batch, opt)["diff"].isfinite()
        # the sampler's 3-4 denoiser calls and the EDM loss's one: this batch's σ_d, in eval mode
        assert len(seen) >= 4 and set(seen) == {(False, estimates[-1])}
    assert estimates[0] != pytest.approx(estimates[1], abs=1e-4)  # the second step did not use the running mean
    # outside a step: the running mean of the estimates (the first replaced the configured 0.2)
    assert int(diffusion.sigma_data_updates) == 2
    assert diffusion.current_sigma_data == float(diffusion.sigma_data) == pytest.approx(sum(estimates) / 2, abs=1e-12)


def test_a_skipped_stage2_step_changes_nothing(setup_once, monkeypatch):
    model, stage, opt, batches = stage2_on(setup_once)
    batch = batches[0]
    before = snapshot(model)
    nan = torch.tensor(float("nan"))
    monkeypatch.setattr(stage, "duration_l1", lambda *a: nan)  # a generator loss turns non-finite ...
    torch.manual_seed(1)
    opt.commit()
    with pytest.raises(NonFiniteStep, match="dur"):
        stage.train_step(model, batch, opt)  # ... after MPD/MSD were stepped
    assert opt.rollback() == ["mpd", "msd"]
    after = model.state_dict()
    moved = [k for k, v in before.items() if not torch.equal(v, after[k]) and not k.endswith(("weight_u", "weight_v"))]
    assert moved == []  # spectral-norm power-iteration vectors aside, every weight and buffer as before
    assert float(model.diffusion.sigma_data) == 0.2 and int(model.diffusion.sigma_data_updates) == 0
    assert all(len(o.state) == 0 for o in opt.optimizers.values())  # no AdamW moment either
