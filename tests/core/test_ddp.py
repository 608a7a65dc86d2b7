"""Multi-process training on DistributedDataParallel (two gloo ranks on the CPU) and gradient
accumulation, on toy stages shaped like StyleTTS 2's: a discriminator step before the generator's,
a module called once per item and through a method other than ``forward``, a third part after the
gradients were cleared (the SLM part), a parameter no loss uses, a group only some ranks' batches
reach, and a buffer each rank updates from its own batch."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

from tts_zoo.interfaces import Stage, TTSModel
from tts_zoo.recipe import Recipe
from tts_zoo.train.loop import Trainer

N_ITEMS = 16
TIMEOUT_S = 240  # a hang fails the test instead of blocking the suite


class Toy(TTSModel):
    """Generator ``net`` (+ ``unused``: in its group, in no loss), a group ``rare`` that only the
    "long" items reach, a discriminator ``disc`` and a ``head`` trained by a third part."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.unused = nn.Linear(2, 2)
        self.rare = nn.Linear(4, 1)
        self.disc = nn.Linear(1, 1)
        self.head = nn.Linear(4, 1)
        self.register_buffer("seen", torch.zeros(()))  # updated from each rank's own batch

    def doubled(self, x):  # a method other than forward, as predict_durations is
        return 2 * self.head(x)

    def synthesize(self, tokens, style=None, **options):  # pragma: no cover - not a TTS model
        raise NotImplementedError


class Items(torch.utils.data.Dataset):
    """x [4], y, and whether the item is "long" (the 3 longest of 16: all in one batch of 8 or less)."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N_ITEMS, 4, generator=g, dtype=torch.float64)
        self.y = self.x @ torch.tensor([1.5, -2.0, 0.5, 3.0], dtype=torch.float64) + 0.3
        self.lengths = [1 + i % 5 for i in range(N_ITEMS)]

    def __len__(self):
        return N_ITEMS

    def __getitem__(self, i):
        return self.x[i], self.y[i], torch.tensor(self.lengths[i] == 5)


def regression(model: Toy, batch) -> torch.Tensor:
    """Mean squared error of ``net`` (called once per item) + the "long" items' ``rare`` term,
    a mean over the batch's items (so that a rank without long items adds zero)."""
    x, y, long = batch
    pred = torch.cat([model.net(x[i : i + 1]) for i in range(len(x))]).squeeze(-1)
    return ((pred - y) ** 2).mean() + (model.rare(x[long]) ** 2).sum() / len(x)


class AutoStage(Stage):
    """The loop steps it (``manual_optimization = False``)."""

    def __init__(self, epochs: int = 2):
        self.epochs = epochs

    def parameter_groups(self, model, config):
        return {"net": {"params": [*model.net.parameters(), *model.unused.parameters()]},
                "rare": {"params": list(model.rare.parameters())}}

    def train_step(self, model, batch, ctx):
        model.seen += batch[0].mean()
        loss = regression(model, batch)
        return {"loss": loss}


class GanStage(AutoStage):
    """Steps its own groups: the discriminator first (undone if the rest fails), then the
    generator, then a third part (through ``doubled``) after clearing every gradient."""

    manual_optimization = True

    def parameter_groups(self, model, config):
        return {**super().parameter_groups(model, config), "head": {"params": list(model.head.parameters())},
                "disc": {"params": list(model.disc.parameters()), "rollback": True}}

    def train_step(self, model, batch, ctx):
        x, y, _ = batch
        model.seen += x.mean()
        fake = model.net(x).detach()
        d_loss = (model.disc(fake) ** 2).mean() + ((model.disc(y.unsqueeze(-1)) - 1) ** 2).mean()
        ctx.backward(d_loss, {"disc": d_loss})
        ctx.step("disc")
        ctx.zero_grad()
        loss = regression(model, batch)
        ctx.backward(loss, {"loss": loss})
        ctx.step("net", "rare")
        ctx.zero_grad()
        second = ((model.doubled(x).squeeze(-1) - 2 * y) ** 2).mean()
        ctx.backward(second, {"second": second})
        ctx.step("head")
        return {"loss": loss.detach(), "disc": d_loss.detach(), "second": second.detach()}


def recipe(batch_size: int, accumulate: int = 1) -> Recipe:
    return Recipe(name="toy", model={"component": "toy"},
                  data={"batch_size": batch_size, "num_workers": 0},
                  train={"log_every": 1, "save_every": 1000, "device": "cpu", "accumulate": accumulate,
                         "optimizer": {"lr": 0.05, "betas": [0.9, 0.99]}})


def train_toy(out: Path, batch_size: int, accumulate: int = 1) -> Toy:
    torch.manual_seed(0)
    model = Toy().double()
    Trainer(recipe(batch_size, accumulate), out, model=model, stages=[AutoStage(), GanStage()], train_set=Items(),
            val_set=None, collate_fn=torch.utils.data.default_collate, progress=False, tensorboard=False).run()
    return model


def losses(run_dir: Path) -> list[dict[str, float]]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k in ("step", "loss", "disc", "second")} for r in rows if r["split"] == "train"]


def spawn(worker: Callable, *args: Any, nprocs: int = 2) -> None:
    """Run ``worker(rank, nprocs, port, *args)`` in ``nprocs`` processes; fail after TIMEOUT_S."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.spawn(worker, args=(nprocs, port, *args), nprocs=nprocs, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"{nprocs} ranks still running after {TIMEOUT_S} s: a hang")


def join_job(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _toy_worker(rank: int, world: int, port: int, out: str) -> None:
    join_job(rank, world, port)
    torch.manual_seed(rank)  # other initial weights on rank 1: the loop starts every rank from rank 0's
    model = Toy().double()
    Trainer(recipe(4, accumulate=2), Path(out) / "run", model=model, stages=[AutoStage(), GanStage()],
            train_set=Items(), val_set=None, collate_fn=torch.utils.data.default_collate, progress=False,
            tensorboard=False).run()
    torch.save({"state": model.state_dict(), "grads": {n: p.grad for n, p in model.named_parameters()}},
               Path(out) / f"rank{rank}.pt")


def test_two_ranks_with_accumulation_match_one_rank_with_the_same_global_batch(tmp_path):
    """2 ranks × 4 items × accumulate 2 = one batch of 16 = the whole data set, every step, as in the
    1-rank run with batches of 16. What differs: nothing random (the toy stages draw no random
    numbers; in a real stage each rank draws its own clips), and the order of the sums (each rank
    averages its items, DDP the ranks), hence a float64 tolerance."""
    spawn(_toy_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in ranks[0]["state"].items():  # parameters and buffers identical on both ranks
        assert torch.equal(value, ranks[1]["state"][name]), name
    single = train_toy(tmp_path / "single", batch_size=N_ITEMS)
    for name, value in single.state_dict().items():
        if name != "seen":  # rank 0's buffer saw rank 0's items only
            torch.testing.assert_close(ranks[0]["state"][name], value, rtol=1e-10, atol=1e-12, msg=name)
    assert torch.equal(ranks[0]["state"]["unused.weight"], single.unused.weight)  # no loss reaches it: unchanged
    torch.manual_seed(0)
    assert not torch.equal(ranks[0]["state"]["rare.weight"], Toy().double().rare.weight)  # one rank's items train it
    assert ranks[0]["grads"]["unused.weight"] is None
    # logged losses: means over both ranks' items, as the single run's over its batch
    two, one = losses(tmp_path / "run"), losses(tmp_path / "single")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4]
    for a, b in zip(two, one):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a)  # logged in float32


def test_accumulate_two_gives_the_update_of_a_batch_twice_as_large(tmp_path):
    """One rank: accumulate 2 × batches of 8 against batches of 16 (both: one step per epoch over the
    16 items), in the loop-stepped stage and in the GAN-like one, whose parts each keep their own
    gradients between the micro-batches."""
    accumulated = train_toy(tmp_path / "acc", batch_size=8, accumulate=2)
    single = train_toy(tmp_path / "single", batch_size=N_ITEMS)
    for name, value in single.named_parameters():
        torch.testing.assert_close(accumulated.get_parameter(name), value, rtol=1e-10, atol=1e-12, msg=name)
    assert [r["step"] for r in losses(tmp_path / "acc")] == [1, 2, 3, 4]
    moved = train_toy(tmp_path / "half", batch_size=8)  # without accumulation: other updates
    assert not torch.allclose(moved.net.weight, single.net.weight)
