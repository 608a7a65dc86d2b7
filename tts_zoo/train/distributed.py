"""Devices and DDP for the training loop: ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK.

Gradients are averaged explicitly (:func:`average_gradients`) before each optimizer step rather than
through ``DistributedDataParallel`` wrappers: stages call the model's sub-modules directly and several
times per step (per-item style encoders, a discriminator step before the generator step), which DDP's
reducer does not support; an all-reduce of the gradients before stepping is the same arithmetic.
Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tts_zoo.train import TrainingError


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
        dist.destroy_process_group()


def all_true(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is True on every rank (so that all ranks take the same branch)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of floats (same keys on every rank) over the ranks."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=info.device, dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's parameters and buffers (same start after a random init)."""
    if not info.distributed:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """All-reduce the gradients of ``params`` to their mean over the ranks. A parameter with a
    gradient on some ranks only counts as zero on the others (DDP's semantics); one without a
    gradient anywhere keeps ``grad = None`` (so AdamW leaves it alone)."""
    if not info.distributed or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=info.device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    grads = []
    for p, h in zip(params, has.tolist()):
        if h > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
