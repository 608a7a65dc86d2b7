"""StyleTTS 2 stages 1 and 2 on two gloo ranks (a tiny model, CPU): a batch with a clip too short to
train on, on one rank only, is skipped on both instead of hanging, and both ranks end with the same
parameters and buffers (spectral-norm vectors, σ_data) — the case that hung before DDP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
import torch

from tests.core.test_ddp import join_job, spawn
from tests.styletts2.test_stages import PHONEMES, corpus, tiny_recipe  # noqa: F401 (corpus: a fixture)
from tts_zoo.data.manifest import Utterance, read_manifest, write_manifest
from tts_zoo.train.loop import Trainer

SHORT_SECONDS = 0.45  # 37 mel frames: clips of 2·(37 // 2 - 1) = 34 < 80 frames, below the stages' minimum
STAGES = ("train.stages=[{component: styletts2_stage1, epochs: 1, tma_epoch: 0, lambda_gen: 1.0}, "
          "{component: styletts2_stage2, epochs: 1, diff_epoch: 0, joint_epoch: 0, lambda_gen: 1.0, "
          "slmadv_min_len: 40, slmadv_max_len: 60, slmadv_batch_percentage: 1.0, slmadv_iter: 1}]")


def with_short_clip(tones: Path, out: Path) -> Path:
    """The corpus's 6 training utterances and one of 0.45 s: 7 items in batches of 2 on 2 ranks."""
    t = np.arange(int(SHORT_SECONDS * 24000)) / 24000
    soundfile.write(str(out / "short.wav"), 0.3 * np.sin(2 * np.pi * 140 * t), 24000, subtype="PCM_16")
    short = Utterance("short", str(out / "short.wav"), "text", PHONEMES[0], "a", SHORT_SECONDS, 24000)
    write_manifest(out / "train.jsonl", [*read_manifest(tones / "train.jsonl"), short])
    return out / "train.jsonl"


def _worker(rank: int, world: int, port: int, tones: str, manifest: str, out: str) -> None:
    join_job(rank, world, port)
    recipe = tiny_recipe(Path(tones), f"data.train={manifest}", "data.val=null", "data.min_frames=20",
                         "data.f0_labels=null", "train.device=cpu", "train.log_every=1", STAGES)
    trainer = Trainer(recipe, Path(out) / "run", progress=False, tensorboard=False)
    trainer.run()
    torch.save({"params": dict(trainer.model.named_parameters()), "buffers": dict(trainer.model.named_buffers())},
               Path(out) / f"rank{rank}.pt")


def test_a_short_clip_on_one_rank_is_skipped_on_both_and_the_ranks_stay_identical(corpus, tmp_path):  # noqa: F811
    manifest = with_short_clip(corpus, tmp_path)
    spawn(_worker, str(corpus), str(manifest), str(tmp_path))  # fails after a timeout instead of hanging
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for kind in ("params", "buffers"):
        assert a[kind].keys() == b[kind].keys()
        different = [n for n, v in a[kind].items() if not torch.equal(v, b[kind][n])]
        assert not different, f"{kind} differ between the ranks: {different}"
    assert a["buffers"]["diffusion.sigma_data_updates"] > 0  # the σ_data estimate moved, alike on both
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = {r["step"]: "mel" in r for r in rows if r["split"] == "train"}
    # 7 items, 2 per batch, 2 ranks: 2 steps per stage; the short clip's step is skipped on both ranks
    assert len(trained) == 4 and sum(trained.values()) == 2, trained
