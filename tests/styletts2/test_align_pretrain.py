"""Text-aligner pretraining (styletts2_align_pretrain) on a few espeak-ng clips: the CTC and decoder
losses fall, the attention becomes diagonal and monotonic, and the CTC warm-up trains the CNN alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tts_zoo import registry
from tts_zoo.data.collate import Collater
from tts_zoo.data.demo import DEFAULT_SPEAKERS
from tts_zoo.data.prepare import prepare_corpus
from tts_zoo.recipe import load_recipe
from tts_zoo.train.data import make_loaders, speech_datasets
from tts_zoo.train.distributed import setup
from tts_zoo.train.optim import StageOptimizer
from tests.styletts2.reference import REPO
from tts_zoo_styletts2.stages.align_pretrain import guided_attention_weights
from tts_zoo_styletts2.stages.common import ctc_targets

ALIGNER = "model.text_aligner={component: asr_cnn, hidden_dim: 64, n_layers: 2, token_embedding_dim: 32}"


@pytest.fixture(scope="module")
def espeak_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("espeak")
    frontend = registry.build_component({"component": "espeak", "language": "en-us"}, "text_frontend")
    prepare_corpus("demo", None, root, frontend, val_fraction=0.0, workers=1,
                   demo_options={"n_utterances": 8, "speakers": DEFAULT_SPEAKERS[:1]})
    return root


def test_guided_attention_weights_are_zero_on_the_diagonal_and_outside_the_lengths():
    w = guided_attention_weights(torch.tensor([4, 2]), torch.tensor([8, 6]), 4, 8, sigma=0.2)
    assert w.shape == (2, 4, 8)
    assert float(w[0, 0, 0]) == 0.0 and float(w[0, 2, 4]) == 0.0  # t/T == f/F
    assert float(w[0, 0, 7]) > 0.9  # far from the diagonal
    assert float(w[1, 2:].abs().sum()) == 0.0 and float(w[1, :, 6:].abs().sum()) == 0.0


def test_ctc_targets_drop_the_framing_blank():
    tokens = torch.tensor([[0, 5, 6, 0, 0], [0, 7, 0, 0, 0]])
    targets, lengths = ctc_targets(tokens, torch.tensor([4, 3]))
    assert lengths.tolist() == [2, 1]
    assert targets.tolist() == [[5, 6], [7, 0]]


def _train(espeak_corpus: Path, steps: int, **stage_args):
    torch.manual_seed(0)
    recipe = load_recipe(REPO / "recipes/demo.yaml", [
        f"data.train={espeak_corpus}/train.jsonl", "data.val=null", "data.batch_size=4", ALIGNER])
    model = registry.build(recipe)
    stage = registry.build_component({"component": "styletts2_align_pretrain", **stage_args}, "stage")
    stage.setup(model, recipe, resumed=False)
    train_set, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(), stage.batch_size)
    batches.set_epoch(0)
    batch = next(iter(loader))
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, steps, setup("cpu"))
    model.eval()
    with torch.no_grad():
        before = stage.validation_step(model, batch, 0)
    model.train()
    history = []
    for i in range(steps):
        opt.epoch, opt.global_step = i // 10, i
        opt.zero_grad()
        result = stage.train_step(model, batch, opt)
        opt.backward(result["loss"], result)
        opt.step()
        history.append({k: float(v.detach()) for k, v in result.items()})
    model.eval()
    with torch.no_grad():
        after = stage.validation_step(model, batch, 0)
    return model, before, after, history


def test_losses_fall_and_the_attention_becomes_monotonic(espeak_corpus):
    torch.set_num_threads(1)
    _, before, after, history = _train(espeak_corpus, 40, lr=0.003, batch_size=4)
    print({k: (round(float(before[k]), 3), round(float(after[k]), 3)) for k in before})
    assert float(after["ctc"]) < 0.8 * float(before["ctc"])
    assert float(after["s2s"]) < 0.8 * float(before["s2s"])
    assert float(after["guide"]) < 0.5 * float(before["guide"])
    assert float(after["path_agreement"]) > float(before["path_agreement"]) + 0.2
    assert float(after["focus_rate"]) > 1.5 * float(before["focus_rate"])


def test_ctc_warmup_trains_only_the_cnn_and_ctc_head(espeak_corpus):
    model, _, _, history = _train(espeak_corpus, 3, lr=0.003, ctc_warmup_epochs=1)
    assert set(history[0]) == {"loss", "ctc"}
    torch.manual_seed(0)
    fresh = registry.build(load_recipe(REPO / "recipes/demo.yaml", [
        f"data.train={espeak_corpus}/train.jsonl", "data.val=null", ALIGNER]))
    old, new = fresh.text_aligner.state_dict(), model.text_aligner.state_dict()
    changed = {k.split(".")[0] for k in old if not torch.equal(old[k], new[k])}
    assert "asr_s2s" not in changed and {"init_cnn", "cnns", "ctc_linear"} <= changed


def test_edit_distance_and_greedy_ctc_error():
    from types import SimpleNamespace

    from tts_zoo_styletts2.stages.align_pretrain import ctc_token_error_rate, edit_distance

    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 3], [1, 2, 3]) == 1 and edit_distance([], [4, 5]) == 2
    # frames decode to 5 5 0 6 6 0 7 → "5 6 7": one insertion against the target "5 6"
    logits = torch.full((1, 7, 10), -5.0)
    for f, tok in enumerate([5, 5, 0, 6, 6, 0, 7]):
        logits[0, f, tok] = 5.0
    batch = SimpleNamespace(texts=torch.tensor([[0, 5, 6, 0]]), input_lengths=torch.tensor([4]),
                            output_lengths=torch.tensor([14]))
    assert float(ctc_token_error_rate(logits, batch)) == 0.5


def test_stage1_with_the_ctc_alignment_trains_around_a_frozen_aligner(espeak_corpus):
    from tts_zoo_styletts2.stages.common import align

    torch.manual_seed(0)
    recipe = load_recipe(REPO / "recipes/demo.yaml", [
        f"data.train={espeak_corpus}/train.jsonl", "data.val=null", "data.batch_size=2", "data.max_frames=80",
        "data.f0_labels=null", ALIGNER])
    model = registry.build(recipe)
    stage = registry.build_component({"component": "styletts2_stage1", "tma_epoch": 0, "lambda_gen": 0,
                                      "alignment": "ctc"}, "stage")
    stage.setup(model, recipe, resumed=False)
    train_set, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater())
    batches.set_epoch(0)
    batch = next(iter(loader))
    out, aln, _ = align(model, batch, zero_padding=True, source="ctc")
    assert out is None  # only the CTC head ran
    assert aln.durations.sum(-1).tolist() == (batch.output_lengths // 2).tolist()  # every frame has a token
    assert torch.equal(aln.attention, aln.path)
    aligner_before = {k: v.clone() for k, v in model.text_aligner.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    opt = StageOptimizer(model, stage.parameter_groups(model, recipe.train.optimizer), recipe.train.optimizer, 1, setup("cpu"))
    opt.epoch, opt.global_step = 0, 0
    terms = stage.train_step(model, batch, opt)
    assert "mel" in terms and "s2s" not in terms and "mono" not in terms
    assert all(torch.equal(v, model.text_aligner.state_dict()[k]) for k, v in aligner_before.items())
    assert any(not torch.equal(v, model.decoder.state_dict()[k]) for k, v in decoder_before.items())
