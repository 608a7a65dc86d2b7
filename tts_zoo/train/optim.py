"""The optimizers of one stage, and the :class:`~tts_zoo.interfaces.StepContext` a stage steps them through.

One AdamW per named parameter group (the reference StyleTTS 2 keeps one optimizer per module, so a
stage can step some modules and not others). The learning rate follows the stage's step count (the
same for every group, whether or not it was stepped): constant (the reference's effective schedule:
its OneCycleLR has div_factor = final_div_factor = 1 and is never stepped) or cosine decay to 0 over
the stage, after an optional linear warm-up.

Betas (:func:`group_betas`): a group's own, else ``train.optimizer.betas``, else the reference's
effective ones. The reference builds every AdamW with betas (0.0, 0.99) and wraps it in a OneCycleLR
that it never steps; building one replaces beta1 by the schedule's first momentum, 0.85 (exactly
0.85 + 0.05·(1 - cos(π/N)) for N scheduled steps: within 1e-5 of 0.85 from N = 160). A stage marks the
groups the reference left wrapped with ``onecycle_beta1``; the others keep (0.0, 0.99).

Guards: :meth:`StageOptimizer.backward` refuses a non-finite loss and :meth:`StageOptimizer.step` a
non-finite gradient, by raising :class:`NonFiniteStep` before anything is applied; the loop then
skips the rest of the step. The decision is taken on every rank together (a NaN on one rank skips the
step everywhere, so DDP ranks never wait on each other; gradients are DDP-averaged, so their norms
are the same on every rank). A group marked ``rollback`` (a GAN's discriminator, stepped before the
generator's losses are known) is copied before its update, and :meth:`StageOptimizer.rollback`
restores its weights and AdamW state when a later part of the same step is skipped: a skipped step
leaves no update behind.

Multi-process: the gradients of each group are averaged over the ranks by DDP during
:meth:`StageOptimizer.backward` (:class:`~tts_zoo.train.distributed.GradientSync`).

Gradient accumulation (``train.accumulate``: one optimizer step per N micro-batches): the loop calls
:meth:`StageOptimizer.start_step` and :meth:`StageOptimizer.start_micro_batch`; every backward pass
scales its loss by 1/N, so that N micro-batches of b items give the gradient of one batch of N·b. On
a micro-batch before the last, ``step(*groups)`` applies nothing: it keeps the groups' gradients
aside, per call (the k-th call of a micro-batch with a group joins the k-th call of the last
micro-batch), and the last micro-batch's call adds them before clipping and stepping. So a stage that
clears gradients between its parts, or steps a group twice per batch (StyleTTS 2's SLM part after the
main update), accumulates each part separately, and the update is that of one batch of N·b items
(up to the order of the sums) — except where a part depends on an update made earlier in the same
step: the earlier micro-batches computed it before that update (a GAN's generator gradients against
the discriminator before this step's update of it; the SLM part's against the main update).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import Tensor, nn

from tts_zoo.interfaces import StepContext
from tts_zoo.train import TrainingError
from tts_zoo.train.distributed import DistInfo, GradientSync, agree

_ADAMW_KEYS = {"lr", "betas", "weight_decay", "eps"}
_GROUP_KEYS = {"params", "onecycle_beta1", "rollback", *_ADAMW_KEYS}
REFERENCE_BETAS = (0.0, 0.99)  # the reference's build_optimizer (optimizers.py)
ONECYCLE_BETA1 = 0.85  # OneCycleLR's base_momentum: the beta1 its constructor leaves in a wrapped AdamW


class NonFiniteStep(Exception):
    """A loss or gradient was NaN/Inf; ``what`` names them (e.g. ``["mel", "gradient of decoder"]``)."""

    def __init__(self, what: list[str]):
        super().__init__(", ".join(what))
        self.what = what


def group_betas(group: Mapping[str, Any], config: Any) -> tuple[float, float]:
    """AdamW betas of a parameter group (see the module docstring): the group's ``betas``; else
    ``config.betas``; else (0.85, 0.99) for a group marked ``onecycle_beta1`` when
    ``config.reference_onecycle_beta1``; else the reference's nominal (0.0, 0.99)."""
    if "betas" in group:
        return tuple(group["betas"])
    if config.betas is not None:
        return tuple(config.betas)
    if group.get("onecycle_beta1") and config.reference_onecycle_beta1:
        return (ONECYCLE_BETA1, REFERENCE_BETAS[1])
    return REFERENCE_BETAS


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a stage of ``total_steps``."""
    factor = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "cosine":
        progress = min(1.0, max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


class StageOptimizer(StepContext):
    """One AdamW per group of a stage + the learning-rate schedule; implements the stage's step context.

    Args:
        model: the model (``zero_grad()`` without names clears all of its gradients).
        groups: ``Stage.parameter_groups`` output: name → {"params", and optionally "lr", "betas",
            "weight_decay", "eps" (AdamW settings), "onecycle_beta1" (the reference's OneCycleLR wraps
            this group: see :func:`group_betas`), "rollback" (undo this group's update when a later
            part of the step is skipped)}.
        config: ``tts_zoo.recipe.OptimizerConfig`` (defaults, clipping, schedule).
        total_steps: the stage's length in steps (for the cosine schedule).
        dist: the process's DDP info (more than one rank: each group's gradients are averaged over
            the ranks by its DDP wrapper; building one is a collective, so every rank builds the
            stage's optimizer at the same point).
    """

    def __init__(self, model: nn.Module, groups: Mapping[str, Mapping[str, Any]], config: Any, total_steps: int,
                 dist: DistInfo):
        self.model = model
        self.config = config
        self.dist = dist
        self.epoch = 0
        self.global_step = 0
        self.params: dict[str, list[nn.Parameter]] = {}
        self.optimizers: dict[str, torch.optim.AdamW] = {}
        self.base_lrs: dict[str, float] = {}
        self.total_steps = total_steps
        self.stage_step = 0  # steps taken in this stage (drives the learning-rate schedule)
        self.grad_norms: dict[str, Tensor] = {}
        self.rollback_groups: set[str] = set()
        self._undo: dict[str, list[tuple[Tensor, Tensor, Optional[dict[str, Any]]]]] = {}
        seen: dict[int, str] = {}
        for name, group in groups.items():
            unknown = set(group) - _GROUP_KEYS
            if unknown:
                raise TrainingError(f"parameter group {name!r}: unknown settings {sorted(unknown)} "
                                    f"(allowed: {sorted(_GROUP_KEYS)})")
            params = [p for p in group["params"] if p.requires_grad]
            for p in params:
                if id(p) in seen:
                    raise TrainingError(f"a parameter is in both optimizer groups {seen[id(p)]!r} and {name!r}")
                seen[id(p)] = name
            if not params:
                continue
            self.params[name] = params
            self.optimizers[name] = torch.optim.AdamW(
                params,
                lr=group.get("lr", config.lr),
                betas=group_betas(group, config),
                weight_decay=group.get("weight_decay", config.weight_decay),
                eps=group.get("eps", config.eps),
            )
            if group.get("rollback"):
                self.rollback_groups.add(name)
            self.base_lrs[name] = self.optimizers[name].param_groups[0]["lr"]
        self.sync = GradientSync(self.params, dist) if dist.distributed else None
        # gradient accumulation (see the module docstring)
        self.micro_batches, self.micro_batch, self.defer_sync = 1, 0, False
        self._kept: dict[tuple[str, int], list[Optional[Tensor]]] = {}
        self._calls: dict[str, int] = {}
        self._set_lrs()

    # ---------------------------------------------------------------- StepContext

    def backward(self, loss: Tensor, terms: Optional[Mapping[str, Any]] = None, retain_graph: bool = False) -> None:
        """Back-propagate ``loss`` (divided by the micro-batches of the step; the gradients averaged over
        DDP ranks) unless it is non-finite on any rank."""
        local_ok = bool(torch.isfinite(loss.detach()).all())
        scaled = loss / self.micro_batches if self.micro_batches > 1 else loss
        if self.sync is None:
            ok = local_ok
            if ok:
                scaled.backward(retain_graph=retain_graph)
        else:
            sync = self.last_micro_batch or not self.defer_sync
            ok = self.sync.backward(scaled, local_ok, sync=sync, retain_graph=retain_graph)
        if not ok:
            bad = [k for k, v in (terms or {}).items()
                   if isinstance(v, Tensor) and not bool(torch.isfinite(v.detach()).all())]
            raise NonFiniteStep(bad or (["loss"] if not local_ok else ["loss (on another rank)"]))

    def agree(self, value: Any, op: str = "min") -> Any:
        """``value`` combined over the DDP ranks (:func:`tts_zoo.train.distributed.agree`)."""
        return agree(value, op, self.dist)

    def step(self, *groups: str) -> None:
        """Clip and apply the named groups (all when none are named); nothing is applied if any of
        their gradients is non-finite."""
        names = groups or tuple(self.optimizers)
        unknown = [n for n in names if n not in self.optimizers]
        if unknown:
            raise KeyError(f"no optimizer group {unknown} (groups: {sorted(self.optimizers)})")
        if not self.last_micro_batch:
            self._keep(names)
            return
        self._add_kept(names)
        norms = {}
        for name in names:
            params = [p for p in self.params[name] if p.grad is not None]
            if not params:
                continue
            if self.config.grad_clip is not None:
                norms[name] = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            else:
                norms[name] = torch.nn.utils.get_total_norm([p.grad for p in params])
        bad = [n for n, v in norms.items() if not bool(torch.isfinite(v))]
        if bad:
            raise NonFiniteStep([f"gradient of {n}" for n in bad])
        for name in names:
            if name in self.rollback_groups and name not in self._undo:
                self._undo[name] = self._snapshot(name)
            self.optimizers[name].step()
        self.grad_norms.update({n: v.detach() for n, v in norms.items()})

    def zero_grad(self, *groups: str) -> None:
        if not groups:
            self.model.zero_grad(set_to_none=True)
            return
        for name in groups:
            if name in self.optimizers:
                self.optimizers[name].zero_grad(set_to_none=True)

    # ---------------------------------------------------------------- gradient accumulation

    def start_step(self, micro_batches: int = 1, defer_sync: bool = False) -> None:
        """An optimizer step over ``micro_batches`` micro-batches begins. ``defer_sync``: average the
        gradients over the ranks only in the last micro-batch's backward (DDP's no_sync; for stages the
        loop steps, whose gradients simply add up)."""
        self.micro_batches, self.defer_sync = micro_batches, defer_sync
        self._kept.clear()
        self.start_micro_batch(0)

    def start_micro_batch(self, index: int) -> None:
        self.micro_batch = index
        self._calls.clear()

    @property
    def last_micro_batch(self) -> bool:
        return self.micro_batch >= self.micro_batches - 1

    def _next_call(self, name: str) -> tuple[str, int]:
        """The k-th ``step`` call of this micro-batch that names group ``name``: (name, k)."""
        k = self._calls.get(name, 0)
        self._calls[name] = k + 1
        return name, k

    def _keep(self, names: tuple[str, ...]) -> None:
        """Set the groups' gradients aside for the same call on the last micro-batch."""
        for name in names:
            kept = self._kept.setdefault(self._next_call(name), [None] * len(self.params[name]))
            for j, p in enumerate(self.params[name]):
                if p.grad is not None:
                    kept[j] = p.grad.detach().clone() if kept[j] is None else kept[j].add_(p.grad)

    def _add_kept(self, names: tuple[str, ...]) -> None:
        for name in names:
            kept = self._kept.pop(self._next_call(name), None)
            for p, g in zip(self.params[name], kept or ()):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad.add_(g)

    # ---------------------------------------------------------------- the loop's side

    def commit(self) -> None:
        """The updates so far are final: drop the copies kept to undo them (the loop calls it before
        and after every step)."""
        self._undo.clear()

    def _snapshot(self, name: str) -> list[tuple[Tensor, Tensor, Optional[dict[str, Any]]]]:
        state = self.optimizers[name].state
        return [(p, p.detach().clone(),
                 {k: v.clone() if isinstance(v, Tensor) else v for k, v in state[p].items()} if p in state else None)
                for p in self.params[name]]

    @torch.no_grad()
    def rollback(self) -> list[str]:
        """Undo this step's updates of the ``rollback`` groups (weights and AdamW state as before
        them); returns the groups undone. Other buffers a forward pass changed are not restored."""
        undone = sorted(self._undo)
        for name in undone:
            state = self.optimizers[name].state
            for p, value, saved in self._undo[name]:
                p.copy_(value)
                if saved is None:
                    state.pop(p, None)
                else:
                    state[p] = saved
        self._undo.clear()
        return undone

    def _set_lrs(self) -> None:
        factor = lr_factor(self.stage_step, self.total_steps, self.config.schedule, self.config.warmup_steps)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[name] * factor

    def advance_schedule(self) -> None:
        self.stage_step += 1
        self._set_lrs()

    def learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()}, "stage_step": self.stage_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = set(state["optimizers"])
        if saved != set(self.optimizers):
            raise TrainingError(f"the checkpoint's optimizer groups {sorted(saved)} differ from this stage's "
                                f"{sorted(self.optimizers)}: was the recipe's model or stage changed?")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.stage_step = int(state["stage_step"])
        self._set_lrs()
