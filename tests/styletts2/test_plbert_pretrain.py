"""PL-BERT pretraining (stage styletts2_plbert_pretrain) on a tiny model and ~100 sentences: whole-word
masking at the reference's rates, the corpus (bad lines, cache, long sentences), both losses falling
in a real run through the training loop, heads absent from inference builds, and a later model
starting from the result through ``model.plbert.weights``."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from tts_zoo import registry
from tts_zoo.checkpoint import load_model
from tts_zoo.data.demo import demo_sentences
from tts_zoo.errors import MissingWeightsError
from tts_zoo.recipe import load_recipe
from tts_zoo.train import TrainingError
from tts_zoo.train.loop import Trainer
from tts_zoo_styletts2.model import StyleTTS2
from tts_zoo_styletts2.plbert import PLBert
from tts_zoo_styletts2.stages import plbert_data
from tts_zoo_styletts2.stages.plbert_data import (
    IGNORE, UNKNOWN_WORD, WORD_SEPARATOR, PLBertTextDataset, collate_text, load_corpus,
)
from tts_zoo_styletts2.stages.plbert_pretrain import PLBertPretrainStage, mask_words
from tts_zoo_styletts2.text.espeak import EspeakFrontend
from tests.styletts2.reference import REPO

RECIPE = REPO / "recipes" / "plbert_pretrain.yaml"
WORDS = 64  # word vocabulary of the tiny model


def tiny_recipe(corpus: Path, **stage):
    settings = {"component": "styletts2_plbert_pretrain", "corpus": str(corpus), "epochs": 7, "batch_size": 16,
                "lr": 0.003, "max_tokens": 128, **stage}
    return load_recipe(RECIPE, [f"model.plbert.word_vocab_size={WORDS}", "model.plbert.max_position_embeddings=128",
                                f"train.stages=[{json.dumps(settings)}]", "train.log_every=1", "train.save_every=1000",
                                "train.optimizer.schedule=constant", "train.optimizer.warmup_steps=0"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """100 demo sentences and 3 bad lines (empty, not UTF-8, no phonemes)."""
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    lines = [s.encode() for s in demo_sentences(100, seed=3)]
    path.write_bytes(b"\n".join(lines[:50] + [b"", b"caf\xe9 au lait", b"(( ))"] + lines[50:]) + b"\n")
    return path


ANIMALS = {"cat": ("black", "sleeps"), "dog": ("brown", "barks"), "bird": ("yellow", "sings"),
           "fish": ("silver", "swims"), "horse": ("white", "runs")}
PLACES = ["in the garden", "near the river", "on the hill", "by the old house", "under the bridge"]


@pytest.fixture(scope="module")
def grammar(tmp_path_factory) -> Path:
    """100 sentences of a small grammar in which words predict each other ("The brown dog barks …")."""
    rng = random.Random(0)
    lines = []
    for _ in range(100):
        animal = rng.choice(list(ANIMALS))
        lines.append(f"The {ANIMALS[animal][0]} {animal} {ANIMALS[animal][1]} {rng.choice(PLACES)}.")
    path = tmp_path_factory.mktemp("grammar") / "sentences.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(grammar, tmp_path_factory):
    """A 40-step run (8 epochs of 5 batches of 16; 20 sentences for validation) of the recipe on the
    tiny model: (run dir, model)."""
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("run")
    recipe = tiny_recipe(grammar, epochs=8, val_fraction=0.2)
    model = registry.build(recipe)
    Trainer(recipe, run_dir, model=model, progress=False, tensorboard=False).run()
    return run_dir, model


def rows(run_dir: Path, split: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


# ------------------------------------------------------------------ masking


def test_whole_word_masking_follows_the_reference_rates():
    # 64 items of 40 three-phoneme words: tokens 10..15 inside words, 16 (space) between them
    n_items, n_words = 64, 40
    tokens, ordinals = [], []
    for b in range(n_items):
        t, o = [], []
        for w in range(n_words):
            t += [10 + (b + w) % 6] * 3 + [16]
            o += [w] * 3 + [-1]
        tokens.append(torch.tensor(t[:-1]))
        ordinals.append(torch.tensor(o[:-1]))
    batch = collate_text([(t, torch.zeros_like(t), o) for t, o in zip(tokens, ordinals)])
    inputs, chosen = mask_words(batch, 99, 0.15, 0.1, 0.1, torch.Generator().manual_seed(0))
    words = chosen[:, ::4]  # first phoneme of every word
    assert not chosen[batch.ordinals < 0].any()  # separators never
    assert torch.equal(chosen[:, 1::4], words) and torch.equal(chosen[:, 2::4], words)  # whole words
    assert words.float().mean().item() == pytest.approx(0.15, abs=0.015)
    masked = inputs[chosen] == 99
    kept = inputs[chosen] == batch.tokens[chosen]
    assert masked.float().mean().item() == pytest.approx(0.8, abs=0.05)
    # random phonemes come from the item's own words; some equal the original by chance (1/6 here)
    assert (~masked & ~kept).float().mean().item() == pytest.approx(0.1 * 5 / 6, abs=0.03)
    assert set(inputs[chosen & (inputs != 99)].tolist()) <= set(range(10, 16))
    assert torch.equal(inputs[~chosen], batch.tokens[~chosen])


# ------------------------------------------------------------------ corpus


def test_corpus_counts_bad_lines_caches_and_splits_long_sentences(corpus, monkeypatch):
    recipe, frontend = tiny_recipe(corpus), EspeakFrontend()
    cache = corpus.with_name(corpus.name + ".plbert.npz")
    cache.unlink(missing_ok=True)
    whole = load_corpus(str(corpus), recipe, frontend, 512)
    assert whole.bad_lines == 3 and len(whole.tokens) == 100 and cache.is_file()
    assert whole.vocabulary[:3] == [".", "the", "a"] and whole.coverage(WORDS) > 0.5
    space = frontend.encode(" ")[0]
    for t, w in zip(whole.tokens, whole.words):  # separators: exactly the spaces between words
        assert len(t) == len(w) and (t[w < 0] == space).all() and w[0] >= 0 and w[-1] >= 0

    split = load_corpus(str(corpus), recipe, frontend, 64)  # another max_tokens: phonemized anew
    assert len(split.tokens) > 100 and max(len(t) for t in split.tokens) <= 64
    n_word_tokens = lambda c: sum(int((w >= 0).sum()) for w in c.words)  # noqa: E731
    assert n_word_tokens(split) == n_word_tokens(whole)  # cut between words: nothing lost

    monkeypatch.setattr(plbert_data, "phonemize_corpus", lambda *a: pytest.fail("phonemized again"))
    again = load_corpus(str(corpus), recipe, frontend, 64)  # from the cache
    assert again.vocabulary == split.vocabulary and again.bad_lines == 3
    assert all((a == b).all() for a, b in zip(again.tokens, split.tokens, strict=True))


def test_dataset_items_map_rare_words_to_unknown_and_separators_to_their_id(corpus):
    c = load_corpus(str(corpus), tiny_recipe(corpus), EspeakFrontend(), 512)
    data = PLBertTextDataset(c, list(range(10)), WORDS)
    tokens, words, ordinals = data[0]
    assert len(tokens) == len(words) == len(ordinals) == data.lengths[0]
    assert (words[ordinals < 0] == WORD_SEPARATOR).all() and int(ordinals.max()) + 1 == int((ordinals < 0).sum()) + 1
    assert int(words.max()) < WORDS and (words == UNKNOWN_WORD).any()  # 64 words cannot know them all
    batch = collate_text([data[i] for i in range(10)])
    short = int(batch.lengths.argmin())
    assert (batch.words[short, batch.lengths[short]:] == IGNORE).all() and (batch.tokens[short, batch.lengths[short]:] == 0).all()


def test_bad_corpus_and_missing_heads_are_one_line_errors(tmp_path):
    recipe = tiny_recipe(tmp_path / "missing.txt")
    with pytest.raises(TrainingError, match="corpus .*missing.txt not found"):
        load_corpus(str(tmp_path / "missing.txt"), recipe, EspeakFrontend(), 128)
    (tmp_path / "empty.txt").write_text("\n  \n")
    model = registry.build(recipe)
    stage = PLBertPretrainStage(corpus=str(tmp_path / "empty.txt"))
    with pytest.raises(TrainingError, match="no usable sentence \\(2 bad or empty lines\\)"):
        stage.datasets(model, recipe)
    model.plbert.heads = None
    with pytest.raises(TrainingError, match="set model.plbert.word_vocab_size"):
        stage.setup(model, recipe, False)


# ------------------------------------------------------------------ training


def test_both_losses_fall_and_masked_phonemes_are_predicted_beyond_chance(trained, grammar):
    run_dir, _ = trained
    train, val = rows(run_dir, "train"), rows(run_dir, "val")
    assert len(train) == 40 and len(val) == 8
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert mean(train[-5:], "mlm") < mean(train[:5], "mlm") - 2.0  # measured: 4.6 → 1.7
    assert mean(train[-5:], "p2w") < mean(train[:5], "p2w") - 2.0  # 3.6 → 1.0
    # chance: the phonemes' unigram distribution (its entropy is the loss of guessing by frequency)
    c = load_corpus(str(grammar), tiny_recipe(grammar), EspeakFrontend(), 128)
    counts = Counter(int(t) for ts, ws in zip(c.tokens, c.words) for t, w in zip(ts, ws) if w >= 0)
    p = torch.tensor(list(counts.values()), dtype=torch.float64) / sum(counts.values())
    entropy, chance = float(-(p * p.log()).sum()), float(p.max())  # measured: 3.20 nats, 0.16
    assert val[-1]["mlm"] < entropy - 0.8 and val[-1]["mlm_acc"] > chance + 0.1  # measured: 2.00, 0.33
    assert val[-1]["p2w"] < val[0]["p2w"] - 1.5 and val[-1]["p2w_acc"] > val[0]["p2w_acc"] + 0.25  # 3.2 → 1.0, 0.32 → 0.72


def test_only_albert_and_heads_train(trained, grammar):
    _, model = trained
    torch.manual_seed(0)
    fresh = registry.build(tiny_recipe(grammar))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, fresh.state_dict()[k])}
    assert changed and all(k.startswith(("plbert.bert.", "plbert.heads.")) for k in changed)
    assert {"plbert.heads.mask_predictor.weight", "plbert.heads.word_predictor.weight",
            "plbert.bert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight"} <= changed


def test_heads_are_in_checkpoints_but_not_in_inference_builds(trained):
    run_dir, model = trained
    latest = run_dir / "checkpoints" / "latest"
    training = load_model(latest, for_inference=False)
    assert torch.equal(training.plbert.heads.mask_predictor.weight, model.plbert.heads.mask_predictor.weight)
    inference = load_model(latest)
    assert inference.plbert.heads is None and not any(".heads." in k for k in inference.state_dict())
    for name, value in inference.plbert.state_dict().items():
        assert torch.equal(value, model.plbert.state_dict()[name]), name
    assert StyleTTS2.inference_block({"plbert": {"component": "plbert", "word_vocab_size": 9}})["plbert"] == {
        "component": "plbert", "word_vocab_size": None}


def test_a_later_model_starts_from_the_pretrained_albert(trained, grammar):
    run_dir, model = trained
    latest = run_dir / "checkpoints" / "latest"
    tokens = torch.randint(1, 178, (2, 30))
    mask = torch.ones_like(tokens)
    mask[1, 20:] = 0
    model.eval()
    with torch.no_grad():
        expected = model.plbert(tokens, mask)
        for weights in (latest, latest / "model.safetensors"):  # a checkpoint directory or its safetensors file
            block = dict(tiny_recipe(grammar).model["plbert"], weights=str(weights), word_vocab_size=None)
            plbert = registry.build_component(block, "language_model").eval()
            assert plbert.heads is None
            assert torch.equal(plbert(tokens, mask), expected)
    with pytest.raises(MissingWeightsError, match="nowhere.* not found"):
        PLBert(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_hidden_layers=2, embedding_size=32,
               weights=str(Path("nowhere")))
