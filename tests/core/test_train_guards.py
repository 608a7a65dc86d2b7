"""The training loop's guards and bookkeeping on the toy problem of test_train_loop: exploded weights
(lr=1e9) and non-finite validations stop the run naming the last good checkpoint and write nothing
after it; a skipped step undoes the discriminator-like groups it already stepped; stale temporary
checkpoint folders go at start; metrics.jsonl has each step once after a resume; a stage's own
max_steps; the optimizer's betas."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.core.test_train_loop import ToyData, ToyModel, ToyStage, assert_same_runs, metrics, run, toy_recipe
from tts_zoo.checkpoint import load_checkpoint
from tts_zoo.recipe import OptimizerConfig
from tts_zoo.train import TrainingError
from tts_zoo.train.distributed import setup
from tts_zoo.train.loop import Trainer
from tts_zoo.train.optim import ONECYCLE_BETA1, REFERENCE_BETAS, StageOptimizer, group_betas


def checkpoint_names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))


# ------------------------------------------------------------------ stop, naming the last good checkpoint


def test_an_exploding_learning_rate_stops_at_the_last_good_checkpoint(tmp_path):
    run(tmp_path, max_steps=4, save_every=2)  # a sound start: checkpoints at steps 2 and 4
    with pytest.raises(TrainingError) as e:
        run(tmp_path, save_every=2, optimizer={"lr": 1e9, "betas": [0.9, 0.99]})  # resumed with lr 1e9
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("stopped at step 5: exploded weights: max |net.")
    assert "> train.max_weight_abs = 10000;" in message
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / 'step_00000004'}" in message
    assert checkpoint_names(tmp_path) == ["step_00000002", "step_00000004"]  # nothing written after it
    good = load_checkpoint(tmp_path / "checkpoints" / "latest").state_dict
    assert max(float(v.abs().max()) for v in good.values()) < 100


class NanValidation(ToyStage):
    """Validation gives NaN from ``bad_epoch`` on (training stays finite)."""

    def __init__(self, epochs: int, bad_epoch: int):
        super().__init__(epochs)
        self.bad_epoch = bad_epoch

    def validation_step(self, model, batch, epoch):
        loss = super().validation_step(model, batch, epoch)["loss"]
        return {"loss": loss * float("nan") if epoch >= self.bad_epoch else loss}


def test_a_non_finite_validation_stops_before_any_checkpoint(tmp_path):
    with pytest.raises(TrainingError) as e:
        run(tmp_path, NanValidation(epochs=3, bad_epoch=1))
    assert str(e.value).startswith("stopped at step 16: non-finite validation loss; the last good checkpoint is "
                                   f"{tmp_path / 'checkpoints' / 'step_00000008'}")
    assert checkpoint_names(tmp_path) == ["step_00000008"]  # epoch 1's end (step 16) was not saved
    assert load_checkpoint(tmp_path / "checkpoints" / "latest", with_training=True).training["state"]["step"] == 8


# ------------------------------------------------------------------ a skipped step leaves no update


class ToyGAN(ToyStage):
    """Steps a discriminator-like group ("disc": the toy's other layer) first, then the generator,
    whose loss is NaN at ``nan_at``; ``record`` gets the disc weights at the start of every step."""

    manual_optimization = True

    def __init__(self, rollback: bool, nan_at=(), record=None):
        super().__init__(epochs=1, nan_at=nan_at, record=record)
        self.rollback = rollback

    def parameter_groups(self, model, config):
        return {"net": {"params": list(model.net.parameters())},
                "disc": {"params": list(model.frozen.parameters()), "rollback": self.rollback}}

    def train_step(self, model, batch, ctx):
        self.record.append((ctx.global_step, model.frozen.weight.detach().clone()))
        x, y = batch
        d_loss = model.frozen(x[:, :2]).pow(2).mean()
        ctx.backward(d_loss, {"disc": d_loss})
        ctx.step("disc")
        ctx.zero_grad()
        loss = nn.functional.mse_loss(model.net(x), y)
        if ctx.global_step in self.nan_at:
            loss = loss * float("nan")
        ctx.backward(loss, {"loss": loss})
        ctx.step("net")
        return {"loss": loss.detach(), "disc": d_loss.detach()}


@pytest.mark.parametrize("rollback", [True, False])
def test_a_skipped_generator_step_undoes_that_steps_discriminator_update(tmp_path, rollback):
    record: list = []
    run(tmp_path, ToyGAN(rollback, nan_at={2}, record=record))
    disc = dict(record)
    assert not torch.equal(disc[1], disc[2])  # a normal step moves the discriminator
    assert torch.equal(disc[2], disc[3]) is rollback  # the skipped step's update is undone (or kept, without rollback)


def test_rollback_restores_weights_and_adamw_state():
    model = ToyModel()
    cfg = OptimizerConfig(lr=0.1)
    opt = StageOptimizer(model, {"disc": {"params": list(model.frozen.parameters()), "rollback": True}}, cfg, 10,
                         setup("cpu"))
    state = opt.optimizers["disc"].state

    def one_step():
        opt.commit()
        opt.zero_grad()
        model.frozen(torch.randn(3, 2)).sum().backward()
        opt.step("disc")

    one_step()
    assert opt.rollback() == ["disc"] and len(state) == 0  # the first step: no AdamW state before it
    one_step()
    opt.commit()  # the update above is final
    weights = model.frozen.weight.detach().clone()
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in state.items()}
    one_step()
    assert not torch.equal(model.frozen.weight, weights)
    assert opt.rollback() == ["disc"]
    assert torch.equal(model.frozen.weight, weights)
    for p, s in state.items():
        assert all(torch.equal(v, moments[id(p)][k]) for k, v in s.items())


# ------------------------------------------------------------------ resume bookkeeping


class Killed(ToyStage):
    """ToyStage that dies (as if killed) at global step ``die_at``, after the rows of earlier steps are written."""

    def __init__(self, epochs: int, die_at: int):
        super().__init__(epochs)
        self.die_at = die_at

    def train_step(self, model, batch, ctx):
        if ctx.global_step == self.die_at:
            raise KeyboardInterrupt
        return super().train_step(model, batch, ctx)


def test_metrics_hold_each_step_once_after_a_resume(tmp_path):
    _, full_model = run(tmp_path / "full", ToyStage(epochs=2), save_every=5)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", Killed(epochs=2, die_at=7), save_every=5)  # steps 6-7 logged after the step-5 save
    assert [r["step"] for r in metrics(tmp_path / "split")] == [1, 2, 3, 4, 5, 6, 7]
    _, resumed_model = run(tmp_path / "split", ToyStage(epochs=2), save_every=5)
    assert [r["step"] for r in metrics(tmp_path / "split")] == list(range(1, 17))
    assert [r["step"] for r in metrics(tmp_path / "split", "val")] == [8, 16]
    assert_same_runs(tmp_path / "full", full_model, tmp_path / "split", resumed_model, 16)


def test_folders_left_by_a_killed_save_are_removed_at_start(tmp_path):
    run(tmp_path, max_steps=4, save_every=2)
    root = tmp_path / "checkpoints"
    (root / ".step_00000006.k3x9q2").mkdir()  # a save killed while writing
    (root / ".step_00000006.k3x9q2" / "model.safetensors").write_bytes(b"partial")
    os.symlink("step_00000006", root / ".latest.tmp")  # killed while moving `latest`
    os.replace(root / "step_00000002", root / ".step_00000002.old")  # killed while replacing step 2
    result, _ = run(tmp_path, max_steps=6, save_every=2)
    assert result.state.step == 6
    # the temporary folder and link are gone; step 2, set aside but never replaced, is back
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002", "step_00000004", "step_00000006"]
    assert load_checkpoint(root / "step_00000002", with_training=True).training["state"]["step"] == 2


# ------------------------------------------------------------------ a stage's own step limit


def run_limited(tmp: Path, **train):
    torch.manual_seed(0)
    first = ToyStage(epochs=3)
    first.max_steps = 5  # what train.stages.0.max_steps sets on a registered stage
    model = ToyModel()
    result = Trainer(toy_recipe(**train), tmp, model=model, stages=[first, ToyStage(epochs=1)], train_set=ToyData(),
                     val_set=ToyData(16, seed=1), collate_fn=torch.utils.data.default_collate, progress=False,
                     tensorboard=False).run()
    return result, model


def test_a_stage_ends_at_its_own_max_steps_and_the_next_one_starts(tmp_path):
    result, model = run_limited(tmp_path / "full", optimizer={"lr": 0.2, "betas": [0.9, 0.99], "schedule": "cosine"})
    assert result.stopped == "finished" and result.state.step == 5 + 8  # 5 of stage 0's 24 steps, then stage 1's 8
    rows = metrics(tmp_path / "full")
    assert [(r["step"], r["stage"]) for r in rows] == [(s, 0) for s in range(1, 6)] + [(s, 1) for s in range(6, 14)]
    assert rows[4]["lr/net"] == 0.0  # the cosine schedule spans the 5 steps the stage has
    assert [(r["step"], r["stage"]) for r in metrics(tmp_path / "full", "val")] == [(5, 0), (13, 1)]
    state = load_checkpoint(tmp_path / "full" / "checkpoints" / "step_00000005", with_training=True).training["state"]
    assert state == {"stage": 1, "epoch": 0, "batch": 0, "step": 5, "bad_steps": 0}
    # interrupted inside the limited stage, and then inside the next: the same run
    opt = {"lr": 0.2, "betas": [0.9, 0.99], "schedule": "cosine"}
    run_limited(tmp_path / "split", optimizer=opt, max_steps=3)
    run_limited(tmp_path / "split", optimizer=opt, max_steps=8)
    _, resumed = run_limited(tmp_path / "split", optimizer=opt)
    assert_same_runs(tmp_path / "full", model, tmp_path / "split", resumed, 13)


# ------------------------------------------------------------------ betas


def test_group_betas_follow_the_reference_unless_the_recipe_sets_them():
    reference = OptimizerConfig()
    assert reference.betas is None and reference.reference_onecycle_beta1
    wrapped, plain, fixed = {"onecycle_beta1": True}, {}, {"betas": (0.9, 0.99), "onecycle_beta1": True}
    assert group_betas(wrapped, reference) == (0.85, 0.99) and group_betas(plain, reference) == (0.0, 0.99)
    assert group_betas(fixed, reference) == (0.9, 0.99)
    nominal = OptimizerConfig(reference_onecycle_beta1=False)
    assert group_betas(wrapped, nominal) == REFERENCE_BETAS == (0.0, 0.99)
    explicit = OptimizerConfig(betas=(0.5, 0.9))
    assert group_betas(wrapped, explicit) == group_betas(plain, explicit) == (0.5, 0.9)
    assert group_betas(fixed, explicit) == (0.9, 0.99)


@pytest.mark.parametrize("steps", [10, 1000])
def test_the_onecycle_beta1_is_what_torch_leaves_in_a_wrapped_adamw(steps):
    """The reference's define_scheduler: OneCycleLR built on AdamW(betas=(0.0, 0.99)), never stepped."""
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-4, betas=(0.0, 0.99))
    torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-4, epochs=1, steps_per_epoch=steps, pct_start=0.0,
                                        div_factor=1, final_div_factor=1)
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    assert beta2 == 0.99 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert beta1 == pytest.approx(ONECYCLE_BETA1 + 0.05 * (1 - math.cos(math.pi / steps)), abs=1e-12)
    assert abs(beta1 - ONECYCLE_BETA1) < (3e-3 if steps == 10 else 1e-6)
