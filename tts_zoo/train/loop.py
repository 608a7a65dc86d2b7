"""The generic training loop: run a recipe's :class:`~tts_zoo.interfaces.Stage` components in order.

``train(recipe)`` (``tts-zoo train recipe.yaml``) builds the model and the stages from the recipe and
owns everything that is not particular to a model:

- **device and DDP**: ``train.device`` ('auto' = CUDA when available); launched by ``torchrun``
  (``torchrun --nproc_per_node 2 -m tts_zoo train recipe.yaml``) each rank trains on its shard of the
  length-bucketed batches (``data.batch_size`` items per process), each optimizer group's gradients
  are averaged over the ranks by its DistributedDataParallel wrapper during the backward pass (NCCL
  on CUDA, gloo on CPU; see :mod:`tts_zoo.train.distributed`), buffers follow rank 0's after every
  step, logged training losses are means over every rank's batches, and only rank 0 writes logs and
  checkpoints (its shard of the validation set);
- **gradient accumulation**: ``train.accumulate: N`` makes one optimizer step of N batches (the
  gradient of one batch N times larger; DDP synchronises once per step where it can, see
  :mod:`tts_zoo.train.optim`); steps, ``max_steps``, ``log_every`` and ``save_every`` count optimizer steps;
- **precision**: ``train.precision: bf16`` runs the stage's forward passes under bfloat16 autocast;
- **optimizers**: one AdamW (+ schedule) per parameter group the stage names, gradient clipping
  (``train.optimizer.grad_clip``), see :mod:`tts_zoo.train.optim`;
- **NaN/Inf guards**: a non-finite loss or gradient skips the step (naming the loss, with the step
  number it is logged under) and undoes the updates the stage made earlier in it (its ``rollback``
  groups, e.g. a GAN's discriminator); after ``train.max_bad_steps`` in a row training stops with a
  message. Training also stops, naming the last good checkpoint, on a non-finite validation and on
  non-finite or exploded weights (a parameter above ``train.max_weight_abs``, checked at every log
  line and save): no checkpoint is ever written after either, so the last one is always good;
- **checkpoints and resume**: every ``train.save_every`` steps and at every epoch end, atomically,
  keeping the last ``train.keep_checkpoints`` plus ``checkpoints/latest``; each holds the model, the
  optimizers and schedules, the RNG states and the position (stage, epoch, batch, step), so running
  the same command again in the run directory continues where the last checkpoint left off, exactly:
  the losses of every later step equal an uninterrupted run's. The data pipeline's own randomness is
  a function of (seed, epoch, item) (samplers; a dataset with ``set_epoch``, such as
  :class:`~tts_zoo.data.dataset.SpeechDataset`, with or without loader workers); the global python /
  numpy / torch generators are restored just before the next step. ``metrics.jsonl`` is cut back to
  the checkpoint's rows. Folders left by a kill during a save are removed at start;
- **reporting**: the resolved recipe printed and saved as ``<run>/recipe.yaml``, a progress display,
  TensorBoard (losses, learning rates, gradient norms, validation metrics, the stage's example audio
  and images of a fixed validation batch) and ``<run>/metrics.jsonl``.

``train.max_steps`` caps the total number of steps over all stages (tests, quick looks); a stage's
``max_steps`` attribute (``train.stages.N.max_steps``) ends that stage after so many of its own steps
(validation and a checkpoint follow, then the next stage starts): a smoke run of every stage.

Data: each stage trains on the recipe's speech manifests unless it brings its own datasets
(``Stage.datasets``, e.g. a text corpus); the loaders are made anew when a stage starts.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from tts_zoo.checkpoint import load_checkpoint, load_state_strict, restore_rng_states, rng_states
from tts_zoo.interfaces import StageData
from tts_zoo.memory import reuse_freed_memory
from tts_zoo.recipe import Recipe, dump_recipe
from tts_zoo.train import TrainingError
from tts_zoo.train import distributed
from tts_zoo.train.checkpoints import CheckpointDir, weight_problem
from tts_zoo.train.data import make_loaders, speech_datasets, to_device
from tts_zoo.train.logging import TrainLogger, accumulate, describe_position, keep_metrics, running_means
from tts_zoo.train.optim import NonFiniteStep, StageOptimizer

__all__ = ["TrainResult", "TrainState", "Trainer", "train"]

HEARTBEAT_SECONDS = 60.0  # longest silence on the console between step lines


@dataclass
class TrainState:
    """Where training is (saved in every checkpoint). ``batch``: batches of the current epoch done."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    bad_steps: int = 0


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Optional[Path]  # the latest checkpoint (None if nothing was saved)
    state: TrainState
    stopped: str  # "finished" (every stage done) or "max_steps"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _token_table_size(model: nn.Module) -> Optional[int]:
    """The text encoder's embedding size: the collater drops larger token ids instead of crashing."""
    encoder = getattr(model, "text_encoder", None)
    if not isinstance(encoder, nn.Module):
        return None
    sizes = [m.num_embeddings for m in encoder.modules() if isinstance(m, nn.Embedding)]
    return min(sizes) if sizes else None


class Trainer:
    """One training run. Everything not given is built from the recipe (tests pass toy parts).

    Args:
        recipe: the validated recipe.
        output_dir: run directory (default: ``train.output_dir`` with ``{name}``).
        resume: continue from the run directory's latest checkpoint (False: refuse to start over one).
        model: the model to train (default: ``registry.build(recipe)``).
        stages: the stages (default: built from ``train.stages``).
        train_set, val_set, collate_fn: the data of the stages that bring none of their own
            (``Stage.datasets``; default: the manifests of ``recipe.data`` as
            :class:`~tts_zoo.data.dataset.SpeechDataset` + :class:`~tts_zoo.data.collate.Collater`).
        progress: show the live progress bar (on a terminal).
        tensorboard: write TensorBoard logs.
    """

    def __init__(
        self,
        recipe: Recipe,
        output_dir: Union[str, Path, None] = None,
        *,
        resume: bool = True,
        model: Optional[nn.Module] = None,
        stages: Optional[list[Any]] = None,
        train_set: Any = None,
        val_set: Any = None,
        collate_fn: Any = None,
        progress: bool = True,
        tensorboard: bool = True,
    ):
        self.recipe = recipe
        self.cfg = recipe.train
        self.run_dir = Path(output_dir if output_dir is not None else self.cfg.output_dir.format(name=recipe.name))
        self.resume = resume
        self.model, self.stages = model, stages
        self.train_set, self.val_set, self.collate_fn = train_set, val_set, collate_fn
        self.progress, self.tensorboard = progress, tensorboard
        self.checkpoints = CheckpointDir(self.run_dir / "checkpoints", self.cfg.keep_checkpoints)
        self._saved_step: Optional[int] = None
        self._stale: list[str] = []

    # ------------------------------------------------------------------ set-up

    def run(self) -> TrainResult:
        if self.cfg.reuse_freed_memory:
            reuse_freed_memory()
        self.dist = distributed.setup(self.cfg.device)
        self.log = None
        try:
            return self._run()
        finally:
            if self.log is not None:
                self.log.close()
            distributed.teardown(self.dist)

    def _build(self) -> Optional[dict[str, Any]]:
        """Model, stages, weights (resumed / init_from) and data; returns the saved training state."""
        from tts_zoo import registry

        if self.dist.is_main:
            self._stale = self.checkpoints.remove_stale()
        latest = self.checkpoints.latest()
        if latest is not None and not self.resume:
            raise TrainingError(f"{self.run_dir} already holds checkpoints (latest: {latest.name}); run without "
                                "--no-resume to continue it, or choose another --output-dir")
        seed_everything(self.cfg.seed)  # the same initial weights on every rank
        if self.model is None:
            self.model = registry.build(self.recipe)
        if self.stages is None:
            self.stages = [registry.build_component(block, "stage", key=f"train.stages.{i}")
                           for i, block in enumerate(self.cfg.stages)]
        if not self.stages:
            raise TrainingError("train.stages is empty: nothing to train (e.g. stages: [{component: styletts2_stage1}])")
        training = None
        if latest is not None:
            ckpt = load_checkpoint(latest, with_training=True)
            if ckpt.training is None:
                raise TrainingError(f"{latest}: no training state to resume from "
                                    f"(start a new --output-dir with train.init_from={latest})")
            load_state_strict(self.model, ckpt.state_dict, ckpt.path)
            training = ckpt.training
            self.state = TrainState(**training["state"])
        else:
            if self.cfg.init_from:
                ckpt = load_checkpoint(self.cfg.init_from)
                load_state_strict(self.model, ckpt.state_dict, ckpt.path)
            self.state = TrainState()
        self.model.to(self.dist.device)
        distributed.broadcast_module(self.model, self.dist)
        return training

    def _use_data(self, stage: Any) -> None:
        """The loaders of a stage that starts: its own data (``Stage.datasets``) or else the recipe's
        speech manifests (read once, when a stage first needs them)."""
        data = stage.datasets(self.model, self.recipe)
        if data is None:
            if self.train_set is None:
                self.train_set, self.val_set = speech_datasets(self.recipe, self.model.frontend)
            if self.collate_fn is None:
                from tts_zoo.data.collate import Collater

                self.collate_fn = Collater(n_symbols=_token_table_size(self.model), ref_frames=self.recipe.data.ref_frames)
            data = StageData(self.train_set, self.val_set, self.collate_fn, getattr(stage, "batch_size", None))
        self.train_loader, self.batches, self.val_loader = make_loaders(
            self.recipe, self.dist, data.train_set, data.val_set, data.collate_fn, data.batch_size)

    def _run(self) -> TrainResult:
        training = self._build()  # before the logger: a recipe that fails to build leaves no run directory
        if training is not None and self.dist.is_main:
            keep_metrics(self.run_dir, training.get("metrics_rows"), self.state.step)
        self.log = TrainLogger(self.run_dir, enabled=self.dist.is_main, progress=self.progress, tensorboard=self.tensorboard,
                               purge_step=self.state.step + 1 if training is not None else None)
        if self._stale:
            self.log.print(f"removed what an interrupted save left: {', '.join(self._stale)}")
        recipe_text = dump_recipe(self.recipe)
        if self.dist.is_main:
            (self.run_dir / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
            self.log.print(f"[bold]recipe[/] {self.recipe.source or self.recipe.name} (resolved):")
            self.log.print(recipe_text.rstrip(), markup=False)
            self.log.text("recipe", recipe_text)
            where = f"resuming from {self.checkpoints.latest()} at step {self.state.step}" if training else "starting"
            self.log.print(f"[bold]{where}[/] · run dir {self.run_dir} · device {self.dist.device}"
                           f"{f' · {torch.get_num_threads()} threads' if self.dist.device.type == 'cpu' else ''}"
                           f"{f' · {self.dist.world_size} ranks' if self.dist.distributed else ''}")
        # Each rank its own random stream from here on; rank 0's is restored exactly on resume.
        seed_everything(self.cfg.seed + 7919 * self.dist.rank + (self.state.step if self.dist.rank else 0))
        rng = training["rng"] if training is not None and self.dist.is_main else None
        if self.cfg.max_steps is not None and self.state.step >= self.cfg.max_steps:
            self.log.print(f"already at train.max_steps={self.cfg.max_steps}; nothing to do")
            return TrainResult(self.run_dir, self.checkpoints.latest(), self.state, "max_steps")

        while self.state.stage < len(self.stages):
            index = self.state.stage
            stage = self.stages[index]
            resumed = training is not None and training.get("optimizer_stage") == index
            # The generators as they were at the save: before the stage's set-up when the checkpoint was
            # taken between stages, just before the next step when inside this one (as uninterrupted).
            if rng is not None and not resumed:
                restore_rng_states(rng)
                rng = None
            stage.setup(self.model, self.recipe, resumed)
            self._use_data(stage)
            groups = stage.parameter_groups(self.model, self.cfg.optimizer)
            limit = self._stage_limit(index)
            total = stage.epochs * self._epoch_steps()
            opt = StageOptimizer(self.model, groups, self.cfg.optimizer, min(total, limit or total), self.dist)
            if resumed:
                opt.load_state_dict(training["optimizer"])
            training = None
            if rng is not None:
                restore_rng_states(rng)
                rng = None
            while self.state.epoch < stage.epochs:
                ended = self._train_epoch(stage, opt, limit)
                if ended == "max_steps":
                    return self._stop(opt, "max_steps")
                self._validate(stage)
                if ended == "stage":
                    break
                self.state.epoch, self.state.batch = self.state.epoch + 1, 0
                if self.state.epoch < stage.epochs:
                    self._save(opt, index)
            self.state.stage, self.state.epoch, self.state.batch = index + 1, 0, 0
            self._save(opt, index)
        latest = self.checkpoints.root / "latest"
        self.log.print(f"[green]done[/]: {len(self.stages)} stage(s), {self.state.step} steps · {latest}")
        return TrainResult(self.run_dir, self.checkpoints.latest(), self.state, "finished")

    # ------------------------------------------------------------------ training

    def _stage_limit(self, index: int) -> Optional[int]:
        """The stage's own step limit (its ``max_steps`` attribute, ``train.stages.N.max_steps``), or None."""
        limit = getattr(self.stages[index], "max_steps", None)
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise TrainingError(f"train.stages.{index}.max_steps: expected a positive number of steps, got {limit!r}")
        return limit

    def _stage_name(self, index: int) -> str:
        blocks = self.cfg.stages
        return blocks[index]["component"] if index < len(blocks) else type(self.stages[index]).__name__

    def _autocast(self) -> Any:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_epoch(self, stage: Any, opt: StageOptimizer, limit: Optional[int]) -> str:
        """Train the rest of the current epoch → "epoch" (it ended), "stage" (the stage's own
        ``max_steps`` reached) or "max_steps" (``train.max_steps`` reached). A step is one optimizer
        update over ``train.accumulate`` batches (fewer at the end of an epoch)."""
        cfg, state = self.cfg, self.state
        epoch_id = 1000 * state.stage + state.epoch  # the data's order and draws depend on (seed, stage, epoch)
        self.batches.set_epoch(epoch_id, skip=state.batch)
        if hasattr(self.train_loader.dataset, "set_epoch"):  # before the iterator (and its workers) start
            self.train_loader.dataset.set_epoch(epoch_id)
        self.train_loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch_id)
        n_batches = self.batches.epoch_length
        stage_done = lambda: limit is not None and opt.stage_step >= limit  # noqa: E731
        where = describe_position(state.stage, len(self.stages), self._stage_name(state.stage), state.epoch, stage.epochs)
        self.log.start_task(where, total=n_batches, completed=state.batch)
        sums: dict[str, Any] = {}
        counts: dict[str, int] = {}
        self.model.train()
        batches = iter(self.train_loader)
        while state.batch < n_batches:
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                return "max_steps"
            if stage_done():  # a resumed run whose stage limit was lowered
                return "stage"
            size = min(cfg.accumulate, n_batches - state.batch)
            opt.epoch, opt.global_step = state.epoch, state.step
            for result in self._train_step(stage, opt, [next(batches) for _ in range(size)]):
                accumulate(sums, counts, result)
            opt.advance_schedule()
            distributed.broadcast_buffers(self.model, self.dist)
            state.step += 1
            state.batch += size
            self.log.advance(size)
            # where the stage is, its pace and ETA on every log line, and at least once a minute
            remaining = (stage.epochs - state.epoch) * self._epoch_steps() - math.ceil(state.batch / cfg.accumulate)
            if limit is not None:
                remaining = min(remaining, limit - opt.stage_step)
            position = f"{where} · batch {state.batch}/{n_batches} · {self.log.pace(remaining)}"
            if state.step % cfg.log_every == 0:
                self._guard_weights()
                self.log.advance_info(self._log_train(opt, sums, counts, position))
                sums, counts = {}, {}
            elif self.log.quiet_for() >= HEARTBEAT_SECONDS:
                self.log.print(f"step {state.step} · {position}")
            if state.step % cfg.save_every == 0:
                self._save(opt, state.stage)
            if stage_done():
                return "stage"
        return "epoch"

    def _epoch_steps(self) -> int:
        """Optimizer steps per epoch: the batches of each rank, ``train.accumulate`` at a time."""
        return math.ceil(self.batches.epoch_length / self.cfg.accumulate)

    def _train_step(self, stage: Any, opt: StageOptimizer, micro_batches: list[Any]) -> list[dict[str, Any]]:
        """One optimizer step over ``micro_batches`` → the losses of each (``[{}]`` when skipped)."""
        manual = stage.manual_optimization
        opt.zero_grad()
        opt.commit()
        opt.start_step(len(micro_batches), defer_sync=not manual)
        results = []
        try:
            for i, batch in enumerate(micro_batches):
                opt.start_micro_batch(i)
                if manual and i:
                    opt.zero_grad()  # the stage's parts start from clear gradients; kept ones wait in opt
                with self._autocast():
                    result = stage.train_step(self.model, to_device(batch, self.dist.device), opt)
                if not manual:  # the backward is a collective: a batch one rank cannot use is skipped on all
                    result = result if opt.agree(bool(result), "min") else {}
                    if result:
                        opt.backward(result["loss"], result)
                results.append(result)
            if not manual and any(results):
                opt.step()
            opt.commit()
            self.state.bad_steps = 0
        except NonFiniteStep as e:
            results = [self._bad_step(opt, e)]
        return results

    def _last_good(self) -> str:
        return f"the last good checkpoint is {self.checkpoints.latest() or 'none'}"

    def _bad_step(self, opt: StageOptimizer, error: NonFiniteStep) -> dict[str, Any]:
        undone = opt.rollback()
        opt.zero_grad()
        state = self.state
        state.bad_steps += 1
        step = state.step + 1  # the number this step is logged under
        undone_note = f" (its update of {', '.join(undone)} undone)" if undone else ""
        self.log.warning(f"step {step}: non-finite {error} — step skipped{undone_note} "
                         f"({state.bad_steps}/{self.cfg.max_bad_steps} in a row)")
        if state.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(
                f"stopped at step {step}: {state.bad_steps} consecutive steps with non-finite values "
                f"(last: {error}); {self._last_good()}. Try a lower "
                "train.optimizer.lr, train.optimizer.grad_clip, train.precision fp32, or check the data")
        return {}

    def _guard_weights(self) -> None:
        """Stop, naming the last good checkpoint, when the weights are non-finite or exploded."""
        problem = weight_problem(self.model, self.cfg.max_weight_abs)
        if problem:
            raise TrainingError(f"stopped at step {self.state.step}: {problem}; {self._last_good()} (lower "
                                "train.optimizer.lr, set train.optimizer.grad_clip, or use precision fp32)")

    def _log_train(self, opt: StageOptimizer, sums: dict, counts: dict, where: str) -> str:
        values = distributed.mean_over_ranks(sums, counts, self.dist)  # every rank's batches
        self.log.log_line(self.state.step, where, values)
        shown = f"loss {values['loss']:.4g}" if "loss" in values else ""
        values.update({f"lr/{k}": v for k, v in opt.learning_rates().items()})
        values.update({f"grad_norm/{k}": float(v) for k, v in opt.grad_norms.items()})
        self.log.scalars(self.state.step, values, "train", stage=self.state.stage, epoch=self.state.epoch)
        return shown

    def _validate(self, stage: Any) -> None:
        """Validation metrics (rank 0's shard of the validation set) and the stage's examples; a
        non-finite value stops training on every rank (a model that validates to NaN is not saved)."""
        if self.val_loader is None:
            return
        bad = self._validation(stage) if self.dist.is_main else []
        if not distributed.all_true(not bad, self.dist):
            raise TrainingError(f"stopped at step {self.state.step}: non-finite validation "
                                f"{', '.join(bad) or '(on rank 0)'}; {self._last_good()} (lower train.optimizer.lr, "
                                "set train.optimizer.grad_clip, or use precision fp32)")

    @torch.no_grad()
    def _validation(self, stage: Any) -> list[str]:
        """Run and log the validation; → the names of its non-finite values."""
        self.model.eval()
        sums: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for i, batch in enumerate(self.val_loader):
            batch = to_device(batch, self.dist.device)
            with self._autocast():
                accumulate(sums, counts, stage.validation_step(self.model, batch, self.state.epoch))
                if i == 0:  # the sampler does not shuffle: the same batch every epoch
                    examples = stage.examples(self.model, batch, self.state.epoch)
                    self.log.media(self.state.step, examples, getattr(self.model, "sample_rate", 24000))
        values = running_means(sums, counts)
        if values:
            where = describe_position(self.state.stage, len(self.stages), self._stage_name(self.state.stage),
                                      self.state.epoch, stage.epochs)
            self.log.log_line(self.state.step, f"[bold]validation[/] · {where}", values)
            self.log.scalars(self.state.step, values, "val", stage=self.state.stage, epoch=self.state.epoch)
        self.model.train()
        return [k for k, v in values.items() if not math.isfinite(v)]

    # ------------------------------------------------------------------ checkpoints

    def _save(self, opt: StageOptimizer, optimizer_stage: int) -> None:
        self._guard_weights()
        if not self.dist.is_main:
            return
        state = self.state
        training = {"state": asdict(state), "optimizer_stage": optimizer_stage, "optimizer": opt.state_dict(),
                    "rng": rng_states(), "metrics_rows": self.log.rows}
        info = {"training": {"step": state.step, "stage": self._stage_name(min(optimizer_stage, len(self.stages) - 1)),
                             "stage_index": optimizer_stage}}
        path = self.checkpoints.save(state.step, self.model, self.recipe, training, extra_info=info,
                                     max_abs=self.cfg.max_weight_abs)
        self._saved_step = state.step
        self.log.print(f"saved {path}")

    def _stop(self, opt: StageOptimizer, reason: str) -> TrainResult:
        if self._saved_step != self.state.step:
            self._save(opt, self.state.stage)
        self.log.print(f"[green]stopped[/] at train.max_steps={self.cfg.max_steps} · {self.checkpoints.root / 'latest'}")
        return TrainResult(self.run_dir, self.checkpoints.latest(), self.state, reason)


def train(recipe: Recipe, output_dir: Union[str, Path, None] = None, resume: bool = True, **kwargs: Any) -> TrainResult:
    """Train ``recipe`` (see the module docstring); ``kwargs`` go to :class:`Trainer`."""
    return Trainer(recipe, output_dir, resume=resume, **kwargs).run()
