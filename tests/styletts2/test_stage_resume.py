"""StyleTTS 2 stages under the training loop: an interrupted run (stopped by train.max_steps, as a
kill after a checkpoint would leave it) resumes to exactly the uninterrupted run, in stage 1 and in
stage 2 (multispeaker: reference clips and out-of-distribution texts drawn by the dataset), with each
stage cut short by its own ``max_steps`` (no trimmed manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.styletts2.test_stages import build, corpus, tiny_recipe  # noqa: F401  (corpus: a fixture)
from tts_zoo.train.loop import Trainer

STAGES = ("train.stages=[{component: styletts2_stage1, epochs: 1, tma_epoch: 0, max_steps: 2}, "
          "{component: styletts2_stage2, epochs: 2, diff_epoch: 0, joint_epoch: 1, max_steps: 4, slmadv_min_len: 40, "
          "slmadv_max_len: 60, slmadv_batch_percentage: 1.0, slmadv_iter: 1}]")
MULTISPEAKER = ("model.multispeaker=true", "model.diffusion.multispeaker=true")


def run(corpus: Path, out: Path, max_steps: int | None = None) -> Trainer:
    torch.set_num_threads(1)
    recipe = tiny_recipe(corpus, STAGES, *MULTISPEAKER, "train.log_every=1", "train.save_every=1000",
                         *([f"train.max_steps={max_steps}"] if max_steps else []))
    trainer = Trainer(recipe, out, model=build(recipe), progress=False, tensorboard=False)
    trainer.run()
    return trainer


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


def test_interrupted_runs_resume_exactly_in_both_stages(corpus, tmp_path):  # noqa: F811
    full = run(corpus, tmp_path / "full")
    # 6 utterances in batches of 2: stage 1 stops after its 2 steps, stage 2 after 4 (3 in epoch 0, 1 in epoch 1)
    assert full.state.step == 6 and full.state.stage == 2
    rows = train_rows(tmp_path / "full")
    assert [(r["step"], r["stage"], r["epoch"]) for r in rows] == [(1, 0, 0), (2, 0, 0), (3, 1, 0), (4, 1, 0),
                                                                    (5, 1, 0), (6, 1, 1)]
    assert "slm_gen" in rows[-1] and "diff" in rows[2]  # joint training in stage 2's second epoch

    run(corpus, tmp_path / "split", max_steps=1)  # stopped inside stage 1
    run(corpus, tmp_path / "split", max_steps=4)  # resumed, stopped inside stage 2's first epoch
    resumed = run(corpus, tmp_path / "split")  # resumed to the end
    assert resumed.state == full.state

    again = train_rows(tmp_path / "split")
    assert [r["step"] for r in again] == [1, 2, 3, 4, 5, 6]  # each step logged once
    for a, b in zip(rows, again):
        assert a == b, f"step {a['step']}: {a} != {b}"  # every loss, learning rate and gradient norm
    own = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, own[name]), name
    # σ_d: the running mean of the 4 batch estimates of stage 2 (the placeholder replaced)
    assert int(resumed.model.diffusion.sigma_data_updates) == 4
