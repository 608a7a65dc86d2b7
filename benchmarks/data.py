"""Data pipeline speed: ``prepare`` (utterances/s) and loading (batches/s), medians of several runs.

    python benchmarks/data.py [--utterances 320] [--repeats 5] [--batch-size 16] [--workers 2]

Uses the espeak-ng demo corpus (synthesized once into a temporary folder) and the registered
``espeak`` frontend. Reports: prepare cold (no cache) and warm (everything cached), dataset items/s,
DataLoader batches/s over the length-bucketing sampler with 0 and ``--workers`` loader workers,
and the padding ratio of bucketed vs. random batches.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tts_zoo.data.batching import LengthBucketSampler, padding_ratio, random_batches
from tts_zoo.data.collate import Collater
from tts_zoo.data.dataset import SpeechDataset
from tts_zoo.data.demo import build_demo
from tts_zoo.data.prepare import prepare_items


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utterances", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from tts_zoo import registry

    frontend = registry.build_component({"component": "espeak"}, kind="text_frontend")
    frontend.phonemize("warm up")  # backend initialisation is not part of the measurement
    tmp = Path(tempfile.mkdtemp(prefix="tts-zoo-bench-"))
    try:
        start = time.perf_counter()
        items = build_demo(tmp / "demo", n_utterances=args.utterances, workers=args.workers)
        synth = time.perf_counter() - start
        n = len(items)
        print(f"demo corpus: {n} utterances synthesized in {synth:.2f} s ({n / synth:.0f} utt/s, one run)")

        runs = iter(range(10**6))

        def cold() -> None:
            prepare_items(items, tmp / f"cold{next(runs)}", frontend, corpus="demo", workers=args.workers)

        t_cold = _median_time(cold, args.repeats)
        prepare_items(items, tmp / "warm", frontend, corpus="demo", workers=args.workers)
        t_warm = _median_time(lambda: prepare_items(items, tmp / "warm", frontend, corpus="demo",
                                                    workers=args.workers), args.repeats)
        print(f"prepare cold (probe + phonemize + write): {n / t_cold:8.0f} utterances/s (median {t_cold:.3f} s)")
        print(f"prepare warm (all cached):                {n / t_warm:8.0f} utterances/s (median {t_warm:.3f} s)")

        ds = SpeechDataset.from_manifest(tmp / "warm" / "train.jsonl", frontend)
        t_items = _median_time(lambda: [ds[i] for i in range(len(ds))], max(1, args.repeats // 2))
        print(f"dataset __getitem__:                      {len(ds) / t_items:8.1f} items/s")
        for workers in (0, args.workers):
            sampler = LengthBucketSampler(ds.lengths, args.batch_size, seed=0)
            loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=Collater(len(frontend.symbols)),
                                                 num_workers=workers, persistent_workers=workers > 0)
            list(loader)  # warm-up epoch (worker start-up)
            epochs = iter(range(1, 10**6))

            def epoch() -> None:
                sampler.set_epoch(next(epochs))
                for _ in loader:
                    pass

            t_epoch = _median_time(epoch, args.repeats)
            print(f"DataLoader, {workers} workers, batch {args.batch_size}:      "
                  f"{len(sampler) / t_epoch:8.1f} batches/s (median epoch {t_epoch:.2f} s)")

        lengths = ds.lengths
        bucketed = list(LengthBucketSampler(lengths, args.batch_size, seed=0))
        shuffled = random_batches(len(lengths), args.batch_size, seed=0)
        print(f"padding ratio, batch {args.batch_size}: bucketed {padding_ratio(bucketed, lengths):.3f}, "
              f"random {padding_ratio(shuffled, lengths):.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
