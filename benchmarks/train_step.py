"""Seconds per training step of the demo recipe: StyleTTS 2 stage 1 (before and after tma_epoch) and
stage 2 (with the style diffusion), on the demo corpus.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_step.py [--steps 10] [--recipe recipes/demo.yaml] [--stage 1|2|both] [OVERRIDE ...]

e.g. with the MPD/MSD adversarial steps the demo leaves out:
    ... benchmarks/train_step.py train.stages.0.lambda_gen=1 train.stages.1.lambda_gen=1

Uses ``data/demo`` when it exists, else makes a 40-utterance demo corpus in a temporary folder.
Prints the median and min over ``--steps`` steps after 2 warm-up steps, per phase, and the implied
time of one demo epoch. Timings on shared machines are noisy: compare medians taken in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tts_zoo import registry
from tts_zoo.memory import reuse_freed_memory
from tts_zoo.recipe import load_recipe
from tts_zoo.train.data import make_loaders, speech_datasets, to_device
from tts_zoo.train.distributed import setup
from tts_zoo.train.loop import seed_everything
from tts_zoo.train.optim import StageOptimizer

REPO = Path(__file__).resolve().parents[1]


def demo_data(tmp: Path) -> str:
    if (REPO / "data/demo/train.jsonl").is_file():
        return str(REPO / "data/demo")
    from tts_zoo.data.prepare import prepare_corpus

    frontend = registry.build_component({"component": "espeak", "language": "en-us"}, "text_frontend")
    prepare_corpus("demo", None, tmp, frontend, val_fraction=0.1, demo_options={"n_utterances": 40})
    return str(tmp)


def time_phase(stage, model, loader, epoch: int, steps: int, recipe) -> list[float]:
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 1000, setup("cpu"))
    opt.epoch = epoch
    times, it = [], iter(loader)
    for i in range(steps + 2):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = to_device(batch, torch.device("cpu"))
        opt.zero_grad()
        opt.global_step = i
        t0 = time.perf_counter()
        result = stage.train_step(model, batch, opt)
        if result and i >= 2:  # warm-up and unusable (too short) batches are not counted
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes/demo.yaml"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--stage", choices=["1", "2", "both"], default="both",
                        help="time one stage per process (peak memory then belongs to that stage)")
    parser.add_argument("overrides", nargs="*", help="dotted recipe overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = demo_data(Path(tmp))
        recipe = load_recipe(args.recipe, [f"data.train={root}/train.jsonl", f"data.val={root}/val.jsonl", *args.overrides])
        if recipe.train.reuse_freed_memory:  # as the Trainer does; train.reuse_freed_memory=false to compare
            reuse_freed_memory()
        seed_everything(0)
        model = registry.build(recipe)
        # the recipe's StyleTTS 2 stages 1 and 2 (pretraining stages before them are not timed here)
        blocks = {b["component"]: b for b in recipe.train.stages}
        stage1, stage2 = (registry.build_component(blocks[name], "stage") for name in ("styletts2_stage1", "styletts2_stage2"))
        train_set, _ = speech_datasets(recipe, model.frontend)
        from tts_zoo.data.collate import Collater

        loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(ref_frames=recipe.data.ref_frames))
        batches.set_epoch(0)
        print(f"recipe {args.recipe}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
              f"{batches.epoch_length} batches of {recipe.data.batch_size} per epoch, {torch.get_num_threads()} threads")
        phases = [
            *([("stage 1, before tma_epoch", stage1, 0)] if stage1.tma_epoch > 0 and args.stage != "2" else []),
            *([("stage 1, from tma_epoch", stage1, stage1.tma_epoch)] if args.stage != "2" else []),
            *([("stage 2, style diffusion on", stage2, stage2.diff_epoch)] if args.stage != "1" else []),
        ]
        if args.stage == "2":
            # a freshly initialised decoder's spectral-norm vectors are unsettled and stage 2's mel loss
            # against its own output is then non-finite: two untimed stage-1 steps settle them
            stage1.setup(model, recipe, resumed=False)
            time_phase(stage1, model, loader, stage1.tma_epoch, 0, recipe)
        for name, stage, epoch in phases:
            stage.setup(model, recipe, resumed=False)
            times = time_phase(stage, model, loader, epoch, args.steps, recipe)
            med = statistics.median(times)
            print(f"{name:30s} median {med:.3f} s/step  min {min(times):.3f}  "
                  f"(≈ {med * batches.epoch_length / 60:.1f} min per epoch)")
        print(f"peak RSS of this process: {peak_rss_gib():.2f} GiB")


def peak_rss_gib() -> float:
    """The kernel's high-water mark of this process's resident memory (VmHWM), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


if __name__ == "__main__":
    main()
