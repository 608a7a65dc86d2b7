"""Data for the training loop: the recipe's manifests (or a stage's own datasets, ``Stage.datasets``)
→ DataLoaders over length buckets.

Each rank reads its own shard (:class:`~tts_zoo.data.batching.LengthBucketSampler` is DDP-aware).
:class:`EpochBatches` makes the order a function of (seed, epoch) alone and can start an epoch part
way through, so a resumed run sees exactly the batches it had not trained on yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Optional

import torch

from tts_zoo.train import TrainingError
from tts_zoo.train.distributed import DistInfo


class EpochBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of one epoch, optionally without the first ``skip`` (a batch sampler wrapper)."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    @property
    def epoch_length(self) -> int:
        return len(self.sampler)


def _manifest_hint(recipe: Any, key: str) -> str:
    prepare = recipe.data.prepare or {}
    if prepare:
        args = " ".join(str(prepare[k]) for k in ("corpus", "source") if prepare.get(k))
        return f"make it with `tts-zoo prepare {args} --out {Path(getattr(recipe.data, key)).parent}`"
    return "make the manifests with `tts-zoo prepare` (e.g. `tts-zoo prepare demo --out data/demo`)"


def speech_datasets(recipe: Any, frontend: Any) -> tuple[Any, Optional[Any]]:
    """The recipe's train (and val) manifests → :class:`~tts_zoo.data.dataset.SpeechDataset` (clips
    shorter than ``data.min_frames`` mel frames, silence padding included, left out)."""
    from tts_zoo.data.dataset import SpeechDataset, read_ood_texts

    data = recipe.data
    if not data.train:
        raise TrainingError("data.train: no training manifest in the recipe " + f"({_manifest_hint(recipe, 'train')})")
    options: dict[str, Any] = {"sample_rate": data.sample_rate, "ref_frames": data.ref_frames, "seed": recipe.train.seed,
                               "cache_audio": data.cache_audio}
    if data.ood_texts:
        if not Path(data.ood_texts).is_file():
            raise TrainingError(f"data.ood_texts: file not found: {data.ood_texts}")
        options["ood_texts"] = read_ood_texts(data.ood_texts)

    def load(key: str) -> Optional[SpeechDataset]:
        path = getattr(data, key)
        if path is None:
            return None
        if not Path(path).is_file():
            raise TrainingError(f"data.{key}: manifest not found: {path} — {_manifest_hint(recipe, key)}")
        dataset = SpeechDataset.from_manifest(path, frontend, **options)
        kept = [r for r, n in zip(dataset.records, dataset.lengths) if n >= data.min_frames]
        if not kept:
            raise TrainingError(f"data.{key}: every clip in {path} is shorter than "
                                f"data.min_frames={data.min_frames} mel frames")
        if len(kept) < len(dataset.records):
            dataset = SpeechDataset(kept, frontend, speakers=dataset.speakers, **options)
        return dataset

    return load("train"), load("val")


def make_loaders(
    recipe: Any,
    dist: DistInfo,
    train_set: Any,
    val_set: Optional[Any],
    collate_fn: Callable[[Sequence[Any]], Any],
    batch_size: Optional[int] = None,
) -> tuple[torch.utils.data.DataLoader, EpochBatches, Optional[torch.utils.data.DataLoader]]:
    """DataLoaders over length-bucketed batches (``dataset.lengths`` gives the lengths) of
    ``batch_size`` items per rank (None: ``data.batch_size``)."""
    from tts_zoo.data.batching import LengthBucketSampler

    data = recipe.data
    batch_size = batch_size or data.batch_size
    lengths = list(getattr(train_set, "lengths", [1] * len(train_set)))
    sampler = LengthBucketSampler(lengths, batch_size, shuffle=True, bucket_batches=64 if data.bucketing else 1,
                                  num_replicas=dist.world_size, rank=dist.rank, seed=recipe.train.seed)
    batches = EpochBatches(sampler)
    if len(sampler) == 0:
        raise TrainingError(f"{len(train_set)} training items make no batch of {batch_size} "
                            f"on {dist.world_size} rank(s)")
    common = {"collate_fn": collate_fn, "num_workers": data.num_workers, "pin_memory": dist.device.type == "cuda"}
    # A private generator: creating an epoch's iterator must not draw from the global RNG (resume parity).
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches, generator=torch.Generator(), **common)
    val_loader = None
    if val_set is not None and len(val_set):
        val_lengths = list(getattr(val_set, "lengths", [1] * len(val_set)))
        val_sampler = LengthBucketSampler(val_lengths, batch_size, shuffle=False,
                                          num_replicas=dist.world_size, rank=dist.rank, seed=recipe.train.seed)
        val_loader = torch.utils.data.DataLoader(val_set, batch_sampler=val_sampler, generator=torch.Generator(), **common)
    return train_loader, batches, val_loader


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a batch (an object with ``.to``, a tensor, or tuples/lists/dicts of them) to ``device``."""
    if hasattr(obj, "to"):  # tensors, and batches that know how to move (tts_zoo.data.collate.Batch)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj
