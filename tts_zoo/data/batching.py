"""Length-bucketing batch sampler, DDP-aware.

Each epoch (seeded by ``seed`` and :meth:`LengthBucketSampler.set_epoch`): shuffle the indices, cut
the permutation into windows of ``bucket_batches × batch_size × world_size`` items, sort each window
by length and cut it into batches (so a batch holds items of similar length: little padding), then
shuffle the batches and deal them round-robin to the ranks. Every rank gets the same number of
batches (DDP steps in lockstep) and the ranks' batches are disjoint and together cover the data set:
when the batch count does not divide by ``world_size``, the last few batches are re-split into a
multiple of ``world_size`` smaller ones (``drop_last`` drops them instead). Only where no such split
exists (fewer items than ranks; batch size 1 with a remainder) are a few items repeated.

:func:`padding_ratio` measures the padded fraction of a batching (bucketed vs. random batches).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Optional

import torch

__all__ = ["LengthBucketSampler", "padding_ratio", "random_batches"]


def padding_ratio(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Fraction of padded positions: ``1 - Σ length / Σ (batch size × longest in batch)``."""
    real = sum(lengths[i] for b in batches for i in b)
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 1.0 - real / total if total else 0.0


def random_batches(n: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Plain shuffled batches (the baseline bucketing is compared with)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LengthBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's batches of indices (pass as ``DataLoader(batch_sampler=...)``).

    Args:
        lengths: a length per item (mel frames, samples or seconds: only the order matters).
        batch_size: items per batch (per rank).
        shuffle: shuffle items and batches each epoch (False: sorted by length, fixed).
        drop_last: drop the batches that do not fill every rank (and incomplete ones).
        bucket_batches: batches per sorting window; larger = less padding, less randomness.
        num_replicas: world size (default: from torch.distributed, else 1).
        rank: this rank (default: from torch.distributed, else 0).
        seed: base seed; the epoch's order depends on (seed, epoch) only.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        bucket_batches: int = 64,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        default_rank, default_world = _dist_info()
        self.num_replicas = num_replicas if num_replicas is not None else default_world
        self.rank = rank if rank is not None else default_rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.bucket_batches = max(1, bucket_batches)
        self.seed = seed
        self.epoch = 0
        self._cache: Optional[tuple[int, list[list[int]]]] = None

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s order (same on every rank)."""
        self.epoch = epoch

    def global_batches(self) -> list[list[list[int]]]:
        """Every rank's batches for the current epoch: ``[rank][step] → indices``."""
        world, n = self.num_replicas, len(self.lengths)
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(n))
        if self.shuffle:
            rng.shuffle(order)
        window = self.bucket_batches * self.batch_size * world if self.shuffle else max(n, 1)
        batches = []
        for w in range(0, n, window):
            chunk = sorted(order[w : w + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        else:  # longest first, as the collater sorts
            batches.reverse()
        if self.drop_last:
            full = [b for b in batches if len(b) == self.batch_size]
            batches = full[: len(full) - len(full) % world]
        elif len(batches) % world:
            batches = self._resplit_tail(batches)
        return [batches[r::world] for r in range(world)]

    def _resplit_tail(self, batches: list[list[int]]) -> list[list[int]]:
        """Re-split the last ``len % world`` batches (with ``world`` more when they hold fewer items
        than ranks) into a multiple of ``world`` batches of at most ``batch_size``: equal step counts,
        no item twice. Only when that is impossible (e.g. batch size 1) are a few items repeated."""
        world = self.num_replicas
        take = len(batches) % world
        if sum(len(b) for b in batches[-take:]) < world and len(batches) >= take + world:
            take += world
        rest = sorted((i for b in batches[-take:] for i in b), key=lambda i: self.lengths[i])
        groups = world * math.ceil(len(rest) / (world * self.batch_size))
        if len(rest) < groups:
            rest = [rest[j % len(rest)] for j in range(groups)]
        size, extra = divmod(len(rest), groups)
        starts = [g * size + min(g, extra) for g in range(groups + 1)]
        return batches[:-take] + [rest[starts[g] : starts[g + 1]] for g in range(groups)]

    def _batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.global_batches()[self.rank])
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
