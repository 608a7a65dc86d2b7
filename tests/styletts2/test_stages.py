"""StyleTTS 2 stages 1 and 2 on a tiny model (recipes/demo.yaml made smaller) and a handful of
synthetic utterances: losses finite and composed as the reference composes them, the modules each
phase trains change and the others do not, and a whole run writes a checkpoint that load_model reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tts_zoo import registry
from tts_zoo.checkpoint import load_model
from tts_zoo.data.collate import Collater
from tts_zoo.data.manifest import Utterance, write_manifest
from tts_zoo.recipe import load_recipe
from tts_zoo.train.data import make_loaders, speech_datasets
from tts_zoo.train.distributed import setup
from tts_zoo.train.loop import Trainer
from tts_zoo.train.optim import StageOptimizer
from tests.styletts2.reference import REPO, tiny_wavlm_config

PHONEMES = [
    "tˈoʊɾəl sˈɛkəndz ɪnðə dʊɹɹˈeɪʃən .",
    "bˈeɪs klˈæs fɔːɹ ɹᵻkwˈɛst hˈændlɚ klˈæsᵻz .",
    "sˈɛt ˈoʊnɚɹ ʌv tˈɑːɹɡɪtpˌæθ .",
    "ˈɔːl ˈʌðɚ mˈɛθədz dᵻpˈɛnd ˌɔn ðˈɪswˌʌn .",
]
WAVLM = {"component": "wavlm", "model": "random", "hidden": 16, "nlayers": 3, "initial_channel": 4,
         "random_init_config": tiny_wavlm_config(16, 3)}
TINY = [  # the demo model, smaller, with short clips and a random tiny WavLM discriminator
    "data.batch_size=2", "data.max_frames=80", "data.num_workers=0",
    "model.decoder.upsample_initial_channel=32", "model.decoder.resblock_kernel_sizes=[3]",
    "model.decoder.resblock_dilation_sizes=[[1, 3]]", "model.decoder.hidden_dim=64",
    "model.mpd.channels=[4, 8, 8, 8, 8]", "model.mpd.periods=[2, 3]", "model.msd.channels=4",
    f"model.slm_discriminator={WAVLM}",
]
MODULES = ("text_encoder", "plbert", "style_encoder", "predictor_encoder", "predictor", "decoder", "diffusion",
           "text_aligner", "pitch_extractor", "mpd", "msd", "slm_discriminator")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Eight 1.0-1.7 s harmonic tones with a moving pitch, two speakers; 6 train + 2 val."""
    root = tmp_path_factory.mktemp("corpus")
    records = []
    for i in range(8):
        seconds = 1.0 + 0.1 * i
        t = np.arange(int(seconds * 24000)) / 24000
        phase = 2 * np.pi * np.cumsum(110 + 30 * (i % 3) + 20 * np.sin(2 * np.pi * 1.5 * t)) / 24000
        wave = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * (0.2 + 0.1 * np.sin(2 * np.pi * 3 * t) ** 2)
        path = root / f"u{i}.wav"
        soundfile.write(str(path), wave, 24000, subtype="PCM_16")
        records.append(Utterance(f"u{i}", str(path), "text", PHONEMES[i % 4], "ab"[i % 2], seconds, 24000))
    write_manifest(root / "train.jsonl", records[:6])
    write_manifest(root / "val.jsonl", records[6:])
    return root


def tiny_recipe(corpus: Path, *extra: str):
    return load_recipe(REPO / "recipes/demo.yaml",
                       [*TINY, f"data.train={corpus}/train.jsonl", f"data.val={corpus}/val.jsonl", *extra])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def build(recipe):
    torch.manual_seed(0)  # the same initial weights in every test
    return registry.build(recipe)


@pytest.fixture(scope="module")
def setup_once(corpus):
    torch.set_num_threads(1)
    recipe = tiny_recipe(corpus)
    model = build(recipe)
    train_set, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(ref_frames=recipe.data.ref_frames))
    batches.set_epoch(0)
    return recipe, model, list(loader)


@torch.no_grad()
def settle_spectral_norms(model, mel: torch.Tensor) -> None:
    """What stage 1 leaves behind: the style encoders' spectral-norm vectors settled by power
    iterations (one per train-mode forward). Stage 2 runs them in eval mode, as the reference does,
    where fresh random vectors would grossly underestimate the norms."""
    for encoder in (model.style_encoder, model.predictor_encoder):
        encoder.train()
        for _ in range(30):
            encoder(mel.unsqueeze(1))


def run_steps(setup_once, stage_block: dict, epoch: int, steps: int = 2):
    """Run ``steps`` training steps of a fresh stage on a fresh model: (results, changed modules, model)."""
    recipe, _, batches = setup_once
    model = build(recipe)
    if stage_block["component"] == "styletts2_stage2":
        settle_spectral_norms(model, batches[0].mels)
    stage = registry.build_component(stage_block, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100, setup("cpu"))
    results, changed = steps_and_changes(model, stage, opt, batches, epoch, steps)
    return results, changed, model


def steps_and_changes(model, stage, opt, batches, epoch: int, steps: int):
    """``steps`` training steps cycling through ``batches`` (seeded) → (results, modules whose parameters changed)."""
    before = {m: snapshot(getattr(model, m)) for m in MODULES}
    torch.manual_seed(1)
    results = []
    for i in range(steps):
        opt.epoch, opt.global_step = epoch, i
        opt.zero_grad()
        results.append(stage.train_step(model, batches[i % len(batches)], opt))
    params = {m: dict(getattr(model, m).named_parameters()) for m in MODULES}
    changed = {m for m in MODULES if any(not torch.equal(p, before[m][n]) for n, p in params[m].items())}
    return results, changed


def assert_finite(results, keys):
    for r in results:
        assert set(keys) <= set(r), f"missing losses {set(keys) - set(r)} in {sorted(r)}"
        for k, v in r.items():
            assert torch.isfinite(v), f"{k} = {v}"


def test_stage1_before_tma_trains_the_reconstruction_path_only(setup_once):
    results, changed, _ = run_steps(setup_once, {"component": "styletts2_stage1", "tma_epoch": 1}, epoch=0)
    assert_finite(results, {"loss", "mel"})
    assert set(results[0]) == {"loss", "mel"} and results[0]["loss"] == results[0]["mel"]  # unweighted, as the reference
    assert changed == {"text_encoder", "style_encoder", "decoder"}


def test_stage1_from_tma_epoch_trains_aligner_and_discriminators(setup_once):
    block = {"component": "styletts2_stage1", "tma_epoch": 1, "lambda_mel": 5.0, "lambda_mono": 2.0}
    results, changed, _ = run_steps(setup_once, block, epoch=1)
    assert_finite(results, {"loss", "mel", "s2s", "mono", "gen", "disc", "slm"})
    r = results[0]
    expected = 5.0 * r["mel"] + 2.0 * r["mono"] + r["s2s"] + r["gen"] + r["slm"]
    assert float(r["loss"]) == pytest.approx(float(expected), rel=1e-5)
    # the pitch extractor gets no gradient; PL-BERT, predictor and diffusion are not part of stage 1
    assert changed == {"text_encoder", "style_encoder", "decoder", "text_aligner", "mpd", "msd"}


def test_lambda_gen_zero_leaves_the_discriminators_out(setup_once):
    results, changed, _ = run_steps(setup_once, {"component": "styletts2_stage1", "tma_epoch": 0, "lambda_gen": 0.0},
                                    epoch=0, steps=1)
    assert "gen" not in results[0] and "disc" not in results[0]
    assert changed == {"text_encoder", "style_encoder", "decoder", "text_aligner"}


def test_stage2_trains_prosody_and_diffusion_with_a_fixed_decoder(setup_once):
    recipe, _, batches = setup_once
    block = {"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 1}
    results, changed, trained = run_steps(setup_once, block, epoch=0)
    model = build(recipe)
    settle_spectral_norms(model, batches[0].mels)
    assert_finite(results, {"loss", "diff", "sty", "f0", "norm", "mel", "ce", "dur", "gen", "disc", "slm"})
    r = results[0]
    expected = (5 * r["mel"] + r["f0"] + 20 * r["ce"] + r["norm"] + r["dur"] + r["gen"] + r["slm"] + r["sty"] + r["diff"])
    assert float(r["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert changed == {"plbert", "predictor", "predictor_encoder", "diffusion", "mpd", "msd"}
    # the prosodic encoder started as a copy of the acoustic one (setup), which did not move
    assert all(torch.equal(v, model.style_encoder.state_dict()[k]) for k, v in trained.style_encoder.state_dict().items())
    assert trained.diffusion.sigma_data_updates == 2  # estimate_sigma_data: one batch estimate per step
    stage = registry.build_component(block, "stage")
    groups = stage.parameter_groups(trained, recipe.train.optimizer)
    assert groups["bert"]["lr"] == recipe.train.optimizer.bert_lr and groups["bert"]["betas"] == (0.9, 0.99)
    assert groups["bert"]["weight_decay"] == 0.01 and groups["decoder"]["lr"] == recipe.train.optimizer.ft_lr


def test_frozen_modules_get_no_gradient_computed(setup_once):
    """The pitch extractor (targets only) and, before joint_epoch, stage 2's acoustic style encoder
    (a detached diffusion target) are left out of the backward pass: their .grad stays None, so no
    time or memory goes into gradients nobody steps."""
    def grads_after_a_step(block, epoch):
        recipe, _, batches = setup_once
        model = build(recipe)
        settle_spectral_norms(model, batches[0].mels)
        stage = registry.build_component(block, "stage")
        stage.setup(model, recipe, resumed=False)
        opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100, setup("cpu"))
        opt.epoch, opt.global_step = epoch, 0
        opt.zero_grad()
        torch.manual_seed(1)
        # the optimizer step does not clear gradients: what backward reached is still there
        assert stage.train_step(model, batches[0], opt)
        return {m: any(p.grad is not None for p in getattr(model, m).parameters()) for m in MODULES if getattr(model, m) is not None}

    stage1 = grads_after_a_step({"component": "styletts2_stage1", "tma_epoch": 0, "lambda_gen": 0.0}, epoch=0)
    assert not stage1["pitch_extractor"] and stage1["decoder"] and stage1["text_aligner"]
    stage2 = grads_after_a_step({"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 1, "lambda_gen": 0.0}, epoch=0)
    assert not stage2["pitch_extractor"] and not stage2["style_encoder"] and not stage2["decoder"]
    assert stage2["predictor"] and stage2["predictor_encoder"] and stage2["plbert"]


def test_stage2_joint_epoch_adds_slm_adversarial_training(setup_once):
    block = {"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 1, "slmadv_min_len": 40,
             "slmadv_max_len": 60, "slmadv_batch_percentage": 1.0, "slmadv_iter": 1}
    results, changed, _ = run_steps(setup_once, block, epoch=1)
    assert_finite(results, {"loss", "mel", "slm", "slm_gen", "slm_disc"})
    assert changed == {"plbert", "predictor", "predictor_encoder", "diffusion", "mpd", "msd", "decoder",
                       "style_encoder", "slm_discriminator"}


def test_stage2_before_decoder_epoch_trains_the_predictor_without_the_decoder(setup_once):
    """decoder_epoch: before it, no decoder pass (no mel, MPD/MSD or WavLM terms, discriminators untouched);
    the durations, F0 and energy losses and the diffusion train; from it, the full stage-2 step."""
    recipe, _, batches = setup_once
    block = {"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 5, "decoder_epoch": 1}
    model = build(recipe)
    settle_spectral_norms(model, batches[0].mels)
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    stage = registry.build_component(block, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100, setup("cpu"))
    results, changed = steps_and_changes(model, stage, opt, batches, epoch=0, steps=2)
    assert not calls
    assert_finite(results, {"loss", "diff", "sty", "f0", "norm", "ce", "dur"})
    r = results[0]
    assert not {"mel", "gen", "disc", "slm"} & set(r)
    assert float(r["loss"]) == pytest.approx(float(r["f0"] + 20 * r["ce"] + r["norm"] + r["dur"] + r["sty"] + r["diff"]), rel=1e-5)
    assert changed == {"plbert", "predictor", "predictor_encoder", "diffusion"}
    results, changed = steps_and_changes(model, stage, opt, batches, epoch=1, steps=1)
    assert calls and {"mel", "gen", "disc", "slm"} <= set(results[0])
    assert {"mpd", "msd"} <= changed


def test_stage2_data_init_starts_durations_and_prosodic_styles_from_the_first_batch(setup_once):
    """data_init: the duration head's biases hold the log-odds of the first batch's P(d > k) (one
    optimizer step later: within a few learning rates), and the step after the initialisation sees
    prosodic styles of RMS 1 (the copy of the acoustic encoder alone is not at that scale)."""
    from tts_zoo_styletts2.stages.common import align

    recipe, _, batches = setup_once
    model = build(recipe)
    settle_spectral_norms(model, batches[0].mels)
    model.eval()  # as stage 2 runs the aligner
    with torch.no_grad():
        _, aln, _ = align(model, batches[0], zero_padding=False, source="ctc")
    inner = torch.cat([d[1 : n - 1] for d, n in zip(aln.durations, batches[0].input_lengths.tolist())]).long()
    max_dur = model.predictor.duration_proj.linear_layer.out_features
    p = (inner.view(-1, 1) > torch.arange(max_dur).view(1, -1)).float().mean(0).clamp(1e-3, 1 - 1e-3)

    styles = []
    model.predictor_encoder.register_forward_hook(lambda _m, _i, out: styles.append(out.detach()))
    block = {"component": "styletts2_stage2", "diff_epoch": 0, "joint_epoch": 5, "decoder_epoch": 5,
             "data_init": True, "alignment": "ctc"}
    stage = registry.build_component(block, "stage")
    stage.setup(model, recipe, resumed=False)
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 100, setup("cpu"))
    steps_and_changes(model, stage, opt, batches, epoch=0, steps=1)
    n = len(batches[0].output_lengths)
    rms = [float(torch.cat(styles[i : i + n]).pow(2).mean().sqrt()) for i in (0, n)]  # initialisation, then the step
    assert rms[1] == pytest.approx(1.0, rel=1e-4) and abs(rms[0] - 1.0) > 0.3
    bias = model.predictor.duration_proj.linear_layer.bias.detach()
    assert torch.allclose(bias, torch.log(p / (1 - p)), atol=3 * recipe.train.optimizer.lr)


def test_a_demo_run_writes_checkpoints_that_load_model_reads(corpus, tmp_path):
    torch.set_num_threads(1)
    recipe = tiny_recipe(corpus, "train.stages=[{component: styletts2_stage1, epochs: 1, tma_epoch: 0}, "
                                 "{component: styletts2_stage2, epochs: 1, diff_epoch: 0, joint_epoch: 5}]")
    model = build(recipe)
    initial = snapshot(model)
    result = Trainer(recipe, tmp_path, model=model, progress=False).run()
    assert result.stopped == "finished" and result.state.step == 6  # 6 utterances / 2 per batch × 2 stages
    assert result.checkpoint.name == "step_00000006"
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items() if k.startswith("decoder."))
    loaded = load_model(tmp_path / "checkpoints" / "latest")
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())
    assert loaded.slm_discriminator is None and loaded.mpd is None  # inference build: training-only parts left out
    tokens = torch.tensor([[0, *model.frontend.encode(PHONEMES[0]), 0]])
    style = loaded.compute_style(torch.randn(1, 80, 120))
    model.eval()  # both sample with the saved running estimate of σ_d
    waves = []
    for m in (model, loaded):
        torch.manual_seed(4)  # the decoder's harmonic source draws its noise from the global generator
        waves.append(m.synthesize(tokens, style, generator=torch.Generator().manual_seed(3)))
    assert waves[0].numel() > 0 and torch.isfinite(waves[0]).all() and torch.equal(waves[0], waves[1])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
