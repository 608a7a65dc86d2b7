"""The generic training loop on a toy problem: learning, NaN/Inf guards, checkpoints, exact resume,
pruning, max_steps and DDP (two gloo ranks on the CPU)."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from tts_zoo.checkpoint import load_checkpoint
from tts_zoo.interfaces import Stage, StageData, TTSModel
from tts_zoo.recipe import Recipe
from tts_zoo.train import TrainingError
from tts_zoo.train.loop import Trainer

TRUE_W = torch.tensor([[1.5, -2.0, 0.5, 3.0]])


class ToyModel(TTSModel):
    """y = w·x + b."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.frozen = nn.Linear(2, 2)  # in no optimizer group: must never change

    def synthesize(self, tokens, style=None, **options):  # pragma: no cover - not a TTS model
        raise NotImplementedError


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ TRUE_W.T + 0.3
        self.lengths = [1 + i % 5 for i in range(n)]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class ToyStage(Stage):
    """MSE regression with a little random target noise (so that resume must restore the RNG);
    ``nan_at``: global steps whose loss is NaN (every step when True)."""

    def __init__(self, epochs: int = 1, nan_at=(), record: list | None = None):
        self.epochs = epochs
        self.nan_at = nan_at
        self.record = record

    def parameter_groups(self, model, config):
        return {"net": {"params": list(model.net.parameters())}}

    def train_step(self, model, batch, ctx):
        if self.record is not None:
            self.record.append((ctx.global_step, model.net.weight.detach().clone()))
        x, y = batch
        loss = nn.functional.mse_loss(model.net(x), y + 0.01 * torch.randn_like(y))
        if self.nan_at is True or ctx.global_step in self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "extra": loss.detach() * 2}

    def validation_step(self, model, batch, epoch):
        x, y = batch
        return {"loss": nn.functional.mse_loss(model.net(x), y)}


class PoisonStage(ToyStage):
    """Finite losses, but the weights become NaN (e.g. an exploding update)."""

    manual_optimization = True

    def train_step(self, model, batch, ctx):
        with torch.no_grad():
            model.net.weight.fill_(float("nan"))
        return {"loss": torch.tensor(1.0)}


def toy_recipe(**train) -> Recipe:
    settings = {"log_every": 1, "save_every": 1000, "optimizer": {"lr": 0.2, "betas": [0.9, 0.99]}, **train}
    return Recipe(name="toy", model={"component": "toy"}, data={"batch_size": 8, "num_workers": 0}, train=settings)


def run(tmp: Path, stage: Stage | None = None, model: nn.Module | None = None, **train):
    torch.manual_seed(0)
    model = model if model is not None else ToyModel()
    trainer = Trainer(toy_recipe(**train), tmp, model=model, stages=[stage or ToyStage(epochs=3)], train_set=ToyData(),
                      val_set=ToyData(16, seed=1), collate_fn=torch.utils.data.default_collate, progress=False,
                      tensorboard=False)
    return trainer.run(), model


def metrics(run_dir: Path, split: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_loss_decreases_and_frozen_parameters_stay(tmp_path):
    torch.manual_seed(0)
    result, model = run(tmp_path, ToyStage(epochs=4))
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 33))  # 64 items / 8 = 8 steps × 4 epochs
    assert rows[-1]["loss"] < 0.05 * rows[0]["loss"]
    assert rows[0]["extra"] == pytest.approx(2 * rows[0]["loss"])
    assert {"lr/net", "grad_norm/net"} <= set(rows[0])
    assert result.stopped == "finished" and result.state.stage == 1 and result.state.step == 32
    val = metrics(tmp_path, "val")
    assert len(val) == 4 and val[-1]["loss"] < val[0]["loss"]
    torch.manual_seed(0)
    assert torch.equal(model.frozen.weight, ToyModel().frozen.weight)
    assert (tmp_path / "recipe.yaml").read_text().startswith("name: toy")


def test_max_steps_and_only_the_newest_checkpoints_are_kept(tmp_path):
    result, _ = run(tmp_path, max_steps=11, save_every=3, keep_checkpoints=2)
    assert result.stopped == "max_steps" and result.state.step == 11
    assert max(r["step"] for r in metrics(tmp_path)) == 11
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    # saves at 3, 6, 8 (end of epoch 1), 9, and 11 (the stop): the newest two remain, plus latest
    assert ckpts == ["latest", "step_00000009", "step_00000011"]
    assert os.readlink(tmp_path / "checkpoints" / "latest") == "step_00000011"
    state = load_checkpoint(tmp_path / "checkpoints" / "latest", with_training=True).training["state"]
    assert state == {"stage": 0, "epoch": 1, "batch": 3, "step": 11, "bad_steps": 0}


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full, full_model = run(tmp_path / "full", max_steps=13)
    run(tmp_path / "split", max_steps=5)  # killed after step 5, mid-epoch
    again, resumed_model = run(tmp_path / "split", max_steps=13)  # same command: resumes
    assert again.state.step == 13
    assert_same_runs(tmp_path / "full", full_model, tmp_path / "split", resumed_model, 13)


def assert_same_runs(dir_a: Path, model_a: nn.Module, dir_b: Path, model_b: nn.Module, steps: int) -> None:
    """The same weights at the end and the same logged loss at every step."""
    for name, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[name]), name
    losses_a = {r["step"]: r["loss"] for r in metrics(dir_a)}
    losses_b = {r["step"]: r["loss"] for r in metrics(dir_b)}  # a resumed run's last line for a step counts
    assert [losses_b[s] for s in range(1, steps + 1)] == [losses_a[s] for s in range(1, steps + 1)]


def test_no_resume_refuses_an_existing_run(tmp_path):
    run(tmp_path, max_steps=2)
    torch.manual_seed(0)
    trainer = Trainer(toy_recipe(max_steps=4), tmp_path, resume=False, model=ToyModel(), stages=[ToyStage()],
                      train_set=ToyData(), collate_fn=torch.utils.data.default_collate, progress=False, tensorboard=False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        trainer.run()


def test_a_non_finite_loss_skips_the_step_and_names_the_loss(tmp_path, caplog):
    record: list = []
    with caplog.at_level(logging.WARNING, logger="tts_zoo.train"):
        result, _ = run(tmp_path, ToyStage(epochs=1, nan_at={2}, record=record), max_bad_steps=2)
    weights = dict(record)
    assert not torch.equal(weights[1], weights[2])  # step 1 trained
    assert torch.equal(weights[2], weights[3])  # step 2 (NaN) was skipped
    assert not torch.equal(weights[3], weights[4])  # and training went on
    assert result.state.step == 8 and result.state.bad_steps == 0
    # the message names the step as it is logged: the third, whose row has no losses
    assert "step 3: non-finite loss, extra — step skipped (1/2 in a row)" in caplog.text
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 9)) and "loss" not in rows[2] and "loss" in rows[3]


def test_repeated_non_finite_losses_stop_with_a_clear_message(tmp_path):
    with pytest.raises(TrainingError) as e:
        run(tmp_path, ToyStage(epochs=1, nan_at=True), max_bad_steps=3, save_every=1)
    assert "stopped at step 3: 3 consecutive steps with non-finite values (last: loss, extra)" in str(e.value)
    assert "lower train.optimizer.lr" in str(e.value)
    for step in (1, 2):  # skipped steps leave the weights as they were: those checkpoints are sound
        state = load_checkpoint(tmp_path / "checkpoints" / f"step_{step:08d}").state_dict
        assert all(torch.isfinite(v).all() for v in state.values())


def test_non_finite_weights_are_never_saved(tmp_path):
    with pytest.raises(TrainingError, match="stopped at step 1: non-finite weights in net.weight; the last good checkpoint is none"):
        run(tmp_path, PoisonStage(epochs=1), save_every=1)
    assert not list((tmp_path / "checkpoints").glob("step_*"))


# ------------------------------------------------------------------ DDP: two gloo ranks on the CPU


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights per rank: the loop must broadcast rank 0's
    model = ToyModel()
    Trainer(toy_recipe(max_steps=6, save_every=3, device="cpu"), Path(out) / "run", model=model,
            stages=[ToyStage(epochs=2)], train_set=ToyData(), val_set=ToyData(16, seed=1),
            collate_fn=torch.utils.data.default_collate, progress=False, tensorboard=False).run()
    torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")


def test_ddp_ranks_stay_in_sync_and_only_rank_0_writes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    assert not torch.equal(a["net.weight"], ToyModel().net.weight)  # trained
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 7))  # one writer: each step logged once
    # 64 items / (8 per batch × 2 ranks) = 4 steps per epoch: saves at 3, 4 (epoch end) and 6
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == [
        "step_00000003", "step_00000004", "step_00000006"]


# ------------------------------------------------------------------ a stage that brings its own data


class OwnDataStage(ToyStage):
    """ToyStage on its own data (``Stage.datasets``): 40 other items in batches of 10, no validation."""

    def __init__(self, epochs: int = 2):
        super().__init__(epochs)
        self.calls: list[str] = []
        self.batch_sizes: list[int] = []

    def datasets(self, model, recipe):
        self.calls.append(recipe.name)
        return StageData(ToyData(40, seed=5), None, torch.utils.data.default_collate, batch_size=10)

    def train_step(self, model, batch, ctx):
        self.batch_sizes.append(len(batch[0]))
        return super().train_step(model, batch, ctx)


def run_two_stages(tmp: Path, **train):
    torch.manual_seed(0)
    model, stages = ToyModel(), [OwnDataStage(epochs=2), ToyStage(epochs=1)]
    result = Trainer(toy_recipe(**train), tmp, model=model, stages=stages, train_set=ToyData(),
                     val_set=ToyData(16, seed=1), collate_fn=torch.utils.data.default_collate, progress=False,
                     tensorboard=False).run()
    return result, model, stages


def test_a_stage_trains_on_its_own_data_and_the_next_on_the_recipes(tmp_path):
    result, _, (own, default) = run_two_stages(tmp_path)
    # stage 1: 40 items / 10 = 4 steps × 2 epochs; stage 2: the trainer's 64 items / 8 = 8 steps
    assert result.stopped == "finished" and result.state.step == 16
    assert own.calls == ["toy"] and own.batch_sizes == [10] * 8
    rows = metrics(tmp_path)
    assert [r["stage"] for r in rows] == [0] * 8 + [1] * 8
    assert rows[7]["loss"] < rows[0]["loss"]  # it learned from its own items
    assert [r["stage"] for r in metrics(tmp_path, "val")] == [1]  # no validation set of its own


def test_resume_is_exact_inside_and_after_a_stage_with_its_own_data(tmp_path):
    _, full_model, _ = run_two_stages(tmp_path / "full", max_steps=13)
    run_two_stages(tmp_path / "split", max_steps=3)  # killed inside the own-data stage
    run_two_stages(tmp_path / "split", max_steps=10)  # and inside the next stage
    again, resumed_model, _ = run_two_stages(tmp_path / "split", max_steps=13)
    assert again.state.step == 13
    assert_same_runs(tmp_path / "full", full_model, tmp_path / "split", resumed_model, 13)


def test_a_stage_that_rejects_its_arguments_names_its_key_and_leaves_no_run_directory(tmp_path):
    from tts_zoo.errors import TTSZooError

    recipe = toy_recipe(stages=[{"component": "styletts2_plbert_pretrain", "random_fraction": 0.9, "keep_fraction": 0.5}])
    trainer = Trainer(recipe, tmp_path / "run", model=ToyModel(), train_set=ToyData(), progress=False, tensorboard=False)
    with pytest.raises(TTSZooError, match=r"train\.stages\.0: .*random_fraction"):
        trainer.run()
    assert not (tmp_path / "run").exists()
