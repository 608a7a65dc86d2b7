"""Devices and multi-process training for the loop: ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK.

Backend: NCCL on CUDA, gloo on CPU. Every rank holds the whole model and trains on its own shard of
the batches (``data.batch_size`` items per process); gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`.

**How the stages meet DDP** (:class:`GradientSync`). Each optimizer group of a stage (StyleTTS 2: one
per trained sub-module — text encoder, decoder, style encoders, predictor, diffusion, PL-BERT and its
projection, aligner, MPD/MSD, WavLM head) gets its own DDP wrapper, but the stages keep calling the
model's plain sub-modules. DDP hooks gradients where they are accumulated, at the parameters, so the
forward passes that produce them need not run inside the wrapper; what DDP needs is to be told, before
a backward pass, which tensor the gradients will flow from. So ``ctx.backward(loss)`` passes the loss
through the forward of the wrappers of the groups it reaches (``ddp(loss)`` returns it unchanged) and
back-propagates the result: each wrapper's reducer then all-reduces exactly that backward's
gradients, bucketed and overlapping the backward. This is what the stages need, where wrapping the
sub-modules and calling the wrappers does not work:

- sub-modules called several times per step (the style encoders once per utterance, then on the
  clip), through methods other than ``forward`` (``predict_durations``, ``diffusion.sample``,
  ``plbert.project``) or for losses that are not back-propagated in that step: DDP would have to see
  each call, and its unused-parameter search starts from the last call's outputs only;
- several backward passes per step, each for different groups (MPD/MSD before the generator, the SLM
  head after it): a group is reduced only in the backward passes whose loss reaches it, so the
  discriminator's backward does not all-reduce the generator's (zero) gradients and the SLM head's
  does not average the generator's gradients a second time;
- graphs that differ between ranks (random clips, the 50 % soft/hard attention, 3 or 4 sampler steps).

Per backward: the groups that the loss reaches (a walk of its autograd graph, ~1 µs per node) are
agreed over the ranks in one all-reduce, together with whether the loss is finite everywhere (a
non-finite loss on one rank skips the step on all). A group reached on some ranks only is reduced on
every rank: where the loss does not reach it, a zero term (0 · one of its weights) joins the loss so
that its reducer runs and contributes zeros, DDP's own semantics for a parameter unused on a rank.
``find_unused_parameters=True`` everywhere, because a loss usually reaches only part of a group (the
aligner's CTC head is in no stage-1 loss, PL-BERT's pooler in none, the SLM step uses part of the
predictor); DDP finds those parameters from the loss and leaves the gradient of one that no rank used
untouched. Each wrapper reduces on its own process group: the order in which different groups'
buckets become ready follows each rank's own graph, and the collectives of one process group must
come in the same order on every rank. Groups are made once and reused by position from stage to stage.

Gradient accumulation (``train.accumulate``): a stage the loop steps (``manual_optimization = False``)
back-propagates the first N-1 micro-batches without arming any wrapper (DDP's ``no_sync``: gradients
add up locally; DDP remembers which parameters they reached) and synchronises once, on the last. A
stage that steps its own optimizers keeps each part's gradients per step call
(:class:`~tts_zoo.train.optim.StageOptimizer`) and is synchronised on every micro-batch: it clears and
steps gradients between its backward passes, so a kept gradient must already be averaged.

Buffers (BatchNorm statistics, spectral-norm vectors, the style diffusion's σ_data estimate) are
not in the wrappers (DDP would broadcast them inside every forward call, a collective per call):
:func:`broadcast_buffers` gives every rank rank 0's after each optimizer step, as DDP's
``broadcast_buffers`` does before each forward.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from tts_zoo.train import TrainingError

V = TypeVar("V")
_OPS = {"min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX, "sum": dist.ReduceOp.SUM}
_PROCESS_GROUPS: list[Any] = []  # one per DDP wrapper position, made on first use (see GradientSync)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """'auto' → cuda (this process's local rank) if available, else cpu; 'cuda' → cuda:local_rank."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device is {setting!r} but no CUDA device is available (use 'auto' or 'cpu')")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup(device_setting: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, local_rank, device)


def teardown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        # Wait for every rank (rank 0 may still be writing a checkpoint): tearing gloo down while a
        # peer still talks aborts the process.
        dist.barrier()
        _PROCESS_GROUPS.clear()
        dist.destroy_process_group()


# ---------------------------------------------------------------------- decisions and values over ranks


def agree(value: V, op: str, info: DistInfo) -> V:
    """``value`` (a number or bool, or a tuple/list of them) combined over the ranks by ``op`` ("min",
    "max" or "sum"), as the same type; itself in a single process. For every decision that changes
    which collectives run (a clip length, a skipped step), so that every rank takes the same branch."""
    if not info.distributed:
        return value
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=_OPS[op])
    out = [type(v)(x) for v, x in zip(values, t.tolist())]
    return type(value)(out) if isinstance(value, (tuple, list)) else out[0]


def all_true(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is True on every rank (so that all ranks take the same branch)."""
    return agree(bool(flag), "min", info)


def mean_over_ranks(sums: Mapping[str, Any], counts: Mapping[str, int], info: DistInfo) -> dict[str, float]:
    """Means of values summed over steps (``sums[k] / counts[k]``), taken over every rank's steps:
    Σ_ranks sums / Σ_ranks counts, for the union of the names the ranks logged."""
    if not info.distributed:
        return {k: float(v) / counts[k] for k, v in sums.items() if counts.get(k)}
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, sorted(sums))
    keys = sorted(set().union(*gathered))
    t = torch.tensor([[float(sums.get(k, 0.0)), float(counts.get(k, 0))] for k in keys], dtype=torch.float64,
                     device=info.device).reshape(-1, 2)
    dist.all_reduce(t)
    return {k: s / n for k, (s, n) in zip(keys, t.tolist()) if n}


def _broadcast(tensors: Iterable[Tensor]) -> None:
    """Rank 0's values of ``tensors`` on every rank: one broadcast per dtype."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src=0)
            offset = 0
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's parameters and buffers (same start after a random init)."""
    if info.distributed:
        _broadcast(module.state_dict().values())


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (DDP's ``broadcast_buffers``, once per optimizer step)."""
    if info.distributed:
        _broadcast(list(module.buffers()))


# ---------------------------------------------------------------------- gradients: DDP per optimizer group


class _Group(nn.Module):
    """The parameters of one optimizer group, for DDP to hook; the forward passes the loss through
    (see the module docstring: this is how a backward pass is announced to the group's reducer)."""

    def __init__(self, params: Sequence[nn.Parameter]):
        super().__init__()
        self.params = nn.ParameterList(params)

    def forward(self, loss: Tensor) -> Tensor:
        return loss


def _process_group(index: int) -> Any:
    """The process group of the ``index``-th DDP wrapper (made collectively, in order, on first use)."""
    while len(_PROCESS_GROUPS) <= index:
        _PROCESS_GROUPS.append(dist.new_group())
    return _PROCESS_GROUPS[index]


def reached_groups(loss: Tensor, owner: Mapping[int, int]) -> set[int]:
    """The groups whose parameters ``loss``'s autograd graph reaches (``owner``: id(parameter) → group)."""
    found: set[int] = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    seen = set(stack)
    while stack:
        node = stack.pop()
        variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf (parameter)
        if variable is not None and id(variable) in owner:
            found.add(owner[id(variable)])
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return found


class GradientSync:
    """DistributedDataParallel for the optimizer groups of one stage (see the module docstring).

    Args:
        groups: group name → its parameters (those that require gradients).
        info: the process's place in the job (more than one rank).
    """

    def __init__(self, groups: Mapping[str, Sequence[nn.Parameter]], info: DistInfo):
        self.info = info
        self.owner = {id(p): i for i, params in enumerate(groups.values()) for p in params}
        self.first = [params[0] for params in groups.values()]
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        # find_unused_parameters: a loss reaches part of a group (module docstring); gradients as views
        # of the all-reduce buckets: no second copy of every gradient.
        self.wrappers = [
            nn.parallel.DistributedDataParallel(
                _Group(params), device_ids=device_ids, find_unused_parameters=True, gradient_as_bucket_view=True,
                process_group=_process_group(i))
            for i, params in enumerate(groups.values())
        ]
        self.pending: set[int] = set()  # groups reached by backward passes not yet synchronised (no_sync)

    def backward(self, loss: Tensor, finite: bool, sync: bool = True, retain_graph: bool = False) -> bool:
        """Back-propagate ``loss`` unless it is non-finite on some rank (→ False, nothing done). With
        ``sync`` the gradients of every group some rank's loss reaches (or reached since the last
        synchronised backward) are averaged over the ranks; without, they add up locally (no_sync)."""
        local = reached_groups(loss, self.owner)
        flags = torch.tensor([0.0 if finite else 1.0] + [float(i in local or i in self.pending)
                                                          for i in range(len(self.wrappers))],
                             device=self.info.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        flags = flags.tolist()
        if flags[0]:
            return False
        if not sync:
            self.pending |= local
            loss.backward(retain_graph=retain_graph)
            return True
        armed = [i for i, hit in enumerate(flags[1:]) if hit]
        for i in armed:
            if i not in local:  # reached elsewhere (or earlier): this rank's reducer must run too
                loss = loss + 0.0 * self.first[i].reshape(-1)[0]
        for i in armed:
            loss = self.wrappers[i](loss)
        loss.backward(retain_graph=retain_graph)
        self.pending.clear()
        return True
