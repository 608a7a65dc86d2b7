"""The text data of PL-BERT pretraining: sentences → word-by-word phonemes → token ids + word ids.

As the reference (yl4579/PL-BERT ``phonemize.py``, ``dataloader.py``): each word is phonemized on its
own (so every phoneme knows its word), words are joined by the frontend's space symbol (the word
separator), a punctuation mark is a word whose phonemes are itself, and every token's target for
phoneme-to-word prediction is its word's id. The word vocabulary is built from the corpus, not from
a tokenizer download: the ``size - 2`` most frequent lower-cased words, plus id 0 = any other word
and id 1 = the word separator. Sentences longer than ``max_tokens`` are cut at word boundaries into
several items. Shapes: B batch, T tokens.

Phonemizing is cached beside a corpus file (``<file>.plbert.npz``, plain arrays, no pickle), keyed
on the texts, the frontend's settings (espeak-ng version included) and ``max_tokens``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import Tensor

from tts_zoo.train import TrainingError

logger = logging.getLogger("tts_zoo.train")

UNKNOWN_WORD, WORD_SEPARATOR = 0, 1  # word-vocabulary ids; frequent words follow from 2
IGNORE = -100  # padding in word targets (cross-entropy's ignore_index)
_CACHE_FORMAT = 1
_DEMO = re.compile(r"demo(?::(\d+))?")


# ------------------------------------------------------------------ reading a corpus


def read_corpus(corpus: Optional[str], recipe: Any) -> tuple[list[Optional[str]], Optional[Path]]:
    """The sentences of ``corpus`` (None = the texts of the recipe's ``data.train`` manifest; a
    ``.jsonl`` manifest; ``demo`` / ``demo:N`` = N built-in demo sentences, 2000 by default; else a
    text file, one sentence a line) and the file they came from (None for the demo). Lines that
    are not valid UTF-8 come back as None (bad lines)."""
    if corpus is None:
        corpus = recipe.data.train
        if not corpus:
            raise TrainingError("styletts2_plbert_pretrain: no corpus (set the stage's corpus: a text file, one "
                                "sentence a line, or demo:2000) and no data.train manifest to take texts from")
    demo = _DEMO.fullmatch(str(corpus))
    if demo:
        from tts_zoo.data.demo import demo_sentences

        try:
            return list(demo_sentences(int(demo.group(1) or 2000), seed=recipe.train.seed)), None
        except ValueError as e:
            raise TrainingError(f"styletts2_plbert_pretrain: corpus {corpus}: {e}") from None
    path = Path(corpus).expanduser()
    if not path.is_file():
        raise TrainingError(f"styletts2_plbert_pretrain: corpus {path} not found (a text file with one sentence "
                            "a line, a .jsonl manifest, or demo:N)")
    if path.suffix == ".jsonl":
        from tts_zoo.data.manifest import read_manifest

        try:
            return [r.text for r in read_manifest(path)], path
        except ValueError as e:
            raise TrainingError(f"styletts2_plbert_pretrain: {e}") from None
    lines: list[Optional[str]] = []
    for raw in path.read_bytes().splitlines():
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(None)
    return lines, path


def split_words(text: str) -> list[str]:
    """Normalized text → words and punctuation marks (the frontend's splitting rules)."""
    from tts_zoo_styletts2.text.cleaner import normalize_text
    from tts_zoo_styletts2.text.espeak import word_tokenize

    return word_tokenize(normalize_text(text))


# ------------------------------------------------------------------ phonemizing


@dataclass
class PhonemizedCorpus:
    """Sentences as token ids and, per token, the corpus index of its word (-1 = word separator)."""

    tokens: list[np.ndarray]  # per item [T] int
    words: list[np.ndarray]  # per item [T] int: index into ``vocabulary``, -1 at separators
    vocabulary: list[str]  # distinct lower-cased words, most frequent first
    counts: list[int]  # occurrences of each word
    bad_lines: int  # empty, undecodable or phoneme-less lines skipped

    def word_ids(self, size: int) -> np.ndarray:
        """Corpus word index → id in a vocabulary of ``size`` (2 + the ``size - 2`` most frequent words)."""
        ids = np.arange(len(self.vocabulary)) + 2
        ids[ids >= size] = UNKNOWN_WORD
        return ids

    def coverage(self, size: int) -> float:
        """Fraction of word occurrences that the ``size``-word vocabulary knows."""
        total = sum(self.counts)
        return sum(self.counts[: max(0, size - 2)]) / total if total else 0.0


def _phonemize_words(words: list[str], frontend: Any) -> list[str]:
    batch = getattr(frontend, "phonemize_batch", None)
    return batch(words) if batch is not None else [frontend.phonemize(w) for w in words]


def phonemize_corpus(texts: list[Optional[str]], frontend: Any, max_tokens: int) -> PhonemizedCorpus:
    """Phonemize ``texts`` word by word with ``frontend`` (one backend call for all distinct words)."""
    separator = frontend.encode(" ")
    if len(separator) != 1:
        raise TrainingError("styletts2_plbert_pretrain: the text frontend has no space symbol to separate words")
    sentences = [split_words(t) if t and t.strip() else [] for t in texts]
    distinct = sorted({w for s in sentences for w in s})
    spoken = [w for w in distinct if any(c.isalnum() for c in w)]
    phonemes = dict(zip(spoken, _phonemize_words(spoken, frontend), strict=True))
    ids = {w: frontend.encode(phonemes.get(w, w)) for w in distinct}  # punctuation: the mark itself
    counts = Counter(w.lower() for s in sentences for w in s if ids[w])
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(vocabulary)}
    tokens, words, bad = [], [], 0
    for sentence in sentences:
        kept = [(ids[w][:max_tokens], index[w.lower()]) for w in sentence if ids[w]]
        if not kept:
            bad += 1
            continue
        for piece in _pieces(kept, max_tokens):
            t: list[int] = []
            k: list[int] = []
            for word_tokens, word in piece:
                if t:
                    t += separator
                    k.append(-1)
                t += word_tokens
                k += [word] * len(word_tokens)
            tokens.append(np.asarray(t, dtype=np.int32))
            words.append(np.asarray(k, dtype=np.int32))
    return PhonemizedCorpus(tokens, words, vocabulary, [counts[w] for w in vocabulary], bad)


def _pieces(words: list[tuple[list[int], int]], max_tokens: int) -> list[list[tuple[list[int], int]]]:
    """Consecutive words packed into pieces of at most ``max_tokens`` tokens (separators counted)."""
    pieces: list[list[tuple[list[int], int]]] = [[]]
    used = 0
    for word in words:
        need = len(word[0]) + (1 if pieces[-1] else 0)
        if pieces[-1] and used + need > max_tokens:
            pieces.append([])
            need, used = len(word[0]), 0
        pieces[-1].append(word)
        used += need
    return pieces


# ------------------------------------------------------------------ cache


def _cache_key(texts: list[Optional[str]], frontend: Any, max_tokens: int) -> str:
    h = hashlib.sha256(json.dumps([_CACHE_FORMAT, max_tokens, list(frontend.symbols), frontend.describe()],
                                  sort_keys=True, default=str).encode())
    for t in texts:
        h.update(b"\x00" if t is None else t.encode() + b"\n")
    return h.hexdigest()


def load_corpus(corpus: Optional[str], recipe: Any, frontend: Any, max_tokens: int) -> PhonemizedCorpus:
    """:func:`read_corpus` + :func:`phonemize_corpus`, through the cache beside the corpus file
    (rebuilt when the texts or the frontend changed; no cache where the folder is read-only)."""
    texts, source = read_corpus(corpus, recipe)
    if source is None:
        return phonemize_corpus(texts, frontend, max_tokens)
    key = _cache_key(texts, frontend, max_tokens)
    cache = source.with_name(source.name + ".plbert.npz")
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            if str(f["key"]) == key:
                return _from_arrays(f)
    result = phonemize_corpus(texts, frontend, max_tokens)
    try:
        _save(cache, key, result)
    except OSError as e:
        logger.warning("could not cache the phonemized corpus at %s (%s); it is phonemized again next time", cache, e)
    return result


def _save(path: Path, key: str, c: PhonemizedCorpus) -> None:
    from tts_zoo.data.manifest import atomic_write_bytes

    offsets = np.cumsum([0] + [len(t) for t in c.tokens])
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), offsets=offsets, bad_lines=np.array(c.bad_lines),
             tokens=np.concatenate(c.tokens) if c.tokens else np.zeros(0, np.int32),
             words=np.concatenate(c.words) if c.words else np.zeros(0, np.int32),
             vocabulary=np.array(c.vocabulary, dtype=str), counts=np.array(c.counts, dtype=np.int64))
    atomic_write_bytes(path, buf.getvalue())


def _from_arrays(f: Any) -> PhonemizedCorpus:
    offsets = f["offsets"]
    tokens, words = f["tokens"], f["words"]
    spans = list(zip(offsets[:-1], offsets[1:]))
    return PhonemizedCorpus([tokens[a:b] for a, b in spans], [words[a:b] for a, b in spans],
                            [str(w) for w in f["vocabulary"]], [int(n) for n in f["counts"]], int(f["bad_lines"]))


# ------------------------------------------------------------------ dataset and batches


class TextBatch(NamedTuple):
    """A padded batch of phonemized text. ``ordinals``: each token's word number within its item
    (-1 at separators and padding), the unit of whole-word masking."""

    tokens: Tensor  # [B, T] long, 0-padded
    words: Tensor  # [B, T] long word-vocabulary ids, IGNORE-padded
    ordinals: Tensor  # [B, T] long
    lengths: Tensor  # [B] long

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "TextBatch":
        return TextBatch(*(t.to(device, non_blocking=non_blocking) for t in self))


class PLBertTextDataset(torch.utils.data.Dataset):
    """Items of a :class:`PhonemizedCorpus`: (tokens [T], word ids [T], word ordinals [T]).

    Args:
        corpus: the phonemized corpus.
        indices: which of its items.
        word_vocab_size: size of the word vocabulary (the phoneme-to-word head's outputs).
    """

    def __init__(self, corpus: PhonemizedCorpus, indices: list[int], word_vocab_size: int):
        self.corpus = corpus
        self.indices = list(indices)
        self.word_ids = torch.from_numpy(corpus.word_ids(word_vocab_size))

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def lengths(self) -> list[int]:
        return [len(self.corpus.tokens[i]) for i in self.indices]

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor, Tensor]:
        i = self.indices[idx]
        tokens = torch.from_numpy(self.corpus.tokens[i].astype(np.int64))
        index = torch.from_numpy(self.corpus.words[i].astype(np.int64))
        is_word = index >= 0
        words = torch.where(is_word, self.word_ids[index.clamp(min=0)], WORD_SEPARATOR)
        starts = is_word & ~torch.cat([torch.zeros(1, dtype=torch.bool), is_word[:-1]])
        ordinals = torch.where(is_word, torch.cumsum(starts, 0) - 1, -1)
        return tokens, words, ordinals


def collate_text(samples: list[tuple[Tensor, Tensor, Tensor]]) -> TextBatch:
    """Pad items into a :class:`TextBatch` (in the given order)."""
    lengths = torch.tensor([len(s[0]) for s in samples])
    tokens = torch.zeros(len(samples), int(lengths.max()), dtype=torch.long)
    words = torch.full_like(tokens, IGNORE)
    ordinals = torch.full_like(tokens, -1)
    for b, (t, w, o) in enumerate(samples):
        tokens[b, : len(t)], words[b, : len(t)], ordinals[b, : len(t)] = t, w, o
    return TextBatch(tokens, words, ordinals, lengths)
