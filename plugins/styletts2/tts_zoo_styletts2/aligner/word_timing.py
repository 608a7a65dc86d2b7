"""Word and phoneme start times from a token→frame alignment, and their errors against reference times.

An alignment quality measure that needs no hand labels: espeak-ng reports when each word of a clip it
speaks starts (:meth:`tts_zoo.data.demo.Espeak.synthesize_words`), and the aligner's monotonic path
(:func:`tts_zoo_styletts2.stages.common.align`) says which frames each token got. A good alignment
starts each word where espeak-ng did. ``benchmarks/alignment.py`` runs this on the demo voices.

**Word rule.** The tokens are the dataset's ``[0] + ids + [0]`` of a space-separated phoneme string
(the espeak frontend splits punctuation off words: ``ðə tɹˈeɪn wʌz lˈeɪt , sˌoʊ …``). Words are the
runs of tokens between separators (the pad 0 and the space); a run made only of punctuation marks
(``, . ! ?`` …, ids 1-15 of the StyleTTS 2 table) is not a word; a word starts at its first
non-punctuation token, a stress mark included (``ˈɔːl`` starts at ``ˈ``: the mark is a token MAS
gives frames to like any other). The predicted start of a word is the first frame of that token
(rule ``"phoneme"``), or of the token just before it — the space, or the pad 0 for the first word —
(rule ``"space"``). The space is a token too and gets at least one frame (25 ms) that connected speech
has no pause for; a trained aligner's path takes it from the start of the next word's sound, so the
``phoneme`` rule leans late by a frame or two (a trained demo aligner's CTC path: +45 ms mean signed
error, against −4 ms by the ``space`` rule). After a comma the pause goes to the tokens `` , ``; the
space rule takes the last of them, the space just before the word.

**Reference rule.** espeak-ng's word events pair up one to one with these words (it joins unstressed
words to the next in both: "in the" → ``ɪnðə``). Its first word always starts at 0 ms, the start of
its audio, although the sound begins 0-60 ms later (leading silence): the first word of a clip is
not scored. espeak-ng starts a word that begins with a stop at the stop's (silent) closure.

**Phoneme rule.** espeak-ng also reports when each phoneme starts
(:meth:`tts_zoo.data.demo.Espeak.synthesize_timings`), named in IPA with its stress mark (``ˈoʊ``);
those names, in order, spell the frontend's phoneme string without its spaces and punctuation. A
phoneme's predicted start is the first frame of its first token (the stress mark of ``ˈoʊ``); every
phoneme after the first is scored (:func:`phoneme_first_tokens`, :func:`phoneme_starts`).

**Time rule.** Aligner frame ``f`` covers mel frames ``2f`` and ``2f+1``; mel frame ``m`` is centred on
sample ``m·hop`` (centred STFT), so frame ``f`` starts at sample ``f·down·hop − hop/2`` of the padded
wave: ``(f·600 − 150 − pad) / 24000`` s in the clip's own time (``pad`` = 5000 samples of silence the
dataset adds on each side).

Shapes: T tokens, F aligner frames (mel frames / 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from tts_zoo.audio import log_mel
from tts_zoo_styletts2.stages.common import align
from tts_zoo_styletts2.text.symbols import PUNCTUATION, SPACE_ID, SYMBOLS

PAD_ID = 0
WordRule = Literal["phoneme", "space"]
PUNCTUATION_IDS = frozenset(i for i, s in enumerate(SYMBOLS) if s in PUNCTUATION and i != SPACE_ID)
"""Ids of the table's punctuation marks (``;:,.!?¡¿—…"«»“”``), the space excluded."""


def word_first_tokens(tokens: Sequence[int], separators: Iterable[int] = (PAD_ID, SPACE_ID),
                      punctuation: Iterable[int] = PUNCTUATION_IDS) -> list[int]:
    """Index of each word's first token in ``tokens`` [T] (the module's word rule), in order."""
    separators, punctuation = set(separators), set(punctuation)
    starts, in_word = [], False
    for i, token in enumerate(int(t) for t in tokens):
        if token in separators:
            in_word = False
        elif token not in punctuation and not in_word:
            starts.append(i)
            in_word = True
    return starts


def token_start_frames(path: Tensor) -> Tensor:
    """First frame of each token of a hard alignment ``path`` [T, F] (0/1, every token ≥ 1 frame, as
    MAS gives) → [T] long. Raises ValueError for a token without a frame."""
    if path.dim() != 2:
        raise ValueError(f"token_start_frames: path must be [T, F], got {tuple(path.shape)}")
    has_frame = path.sum(-1) > 0
    if not bool(has_frame.all()):
        raise ValueError(f"token_start_frames: token(s) {torch.nonzero(~has_frame).flatten().tolist()} have no frame")
    return (path > 0).int().argmax(-1)  # argmax returns the first maximal index


def uniform_path(n_tokens: int, n_frames: int) -> Tensor:
    """The naive alignment: the frames spread evenly over the tokens (token t gets frames
    ``floor(t·F/T)`` … ``floor((t+1)·F/T) − 1``) → path [T, F] float 0/1. Needs F ≥ T."""
    if n_frames < n_tokens or n_tokens < 1:
        raise ValueError(f"uniform_path: {n_frames} frames cannot cover {n_tokens} tokens")
    owner = torch.arange(n_frames) * n_tokens // n_frames  # token of each frame
    return (owner.unsqueeze(0) == torch.arange(n_tokens).unsqueeze(1)).float()


def frame_start_seconds(frames: Any, *, pad_samples: int = 5000, hop: int = 300, down: int = 2,
                        sample_rate: int = 24000) -> np.ndarray:
    """Start time (s, in the unpadded clip) of aligner frames (the module's time rule) → float64 array."""
    frames = np.asarray(frames.tolist() if isinstance(frames, Tensor) else frames, dtype=np.float64)
    return (frames * down * hop - hop / 2 - pad_samples) / sample_rate


def word_starts(path: Tensor, tokens: Sequence[int], rule: WordRule = "phoneme", **timing: int) -> np.ndarray:
    """Predicted start time (s, unpadded clip) of each word of ``tokens`` [T] under ``path`` [T, F]:
    the first frame of the word's first non-punctuation token (``rule="phoneme"``), or of the token
    just before it, the space (``"space"``; see the module's word rule). ``timing``: the keyword
    arguments of :func:`frame_start_seconds`."""
    first = word_first_tokens(tokens)
    if rule == "space":
        first = [max(i - 1, 0) for i in first]
    elif rule != "phoneme":
        raise ValueError(f"word_starts: rule must be 'phoneme' or 'space', got {rule!r}")
    return frame_start_seconds(token_start_frames(path)[first], **timing)


def phoneme_first_tokens(phonemes: str, names: Sequence[str], skipped: str = " " + "".join(PUNCTUATION)) -> Optional[list[int]]:
    """Index in the tokens ``[0] + ids + [0]`` of ``phonemes`` (one token per character) of the first
    token of each reference phoneme ``names`` (espeak-ng's IPA, in order; spaces and punctuation of
    ``phonemes`` are skipped between them). None when the names do not spell ``phonemes`` (the clip
    cannot be scored)."""
    chars, first, pos = list(phonemes), [], 0
    for name in names:
        while pos < len(chars) and chars[pos] in skipped:
            pos += 1
        if not name or "".join(chars[pos : pos + len(name)]) != name:
            return None
        first.append(pos + 1)  # + 1: the leading pad token
        pos += len(name)
    if any(c not in skipped for c in chars[pos:]):
        return None
    return first


def phoneme_starts(path: Tensor, first_tokens: Sequence[int], **timing: int) -> np.ndarray:
    """Predicted start time (s, unpadded clip) of each phoneme whose first token is ``first_tokens``
    (:func:`phoneme_first_tokens`) under ``path`` [T, F]."""
    return frame_start_seconds(token_start_frames(path)[list(first_tokens)], **timing)


class WordTimingSummary(NamedTuple):
    """Word start errors of a set of words (ms; shares in [0, 1])."""

    words: int
    median_ms: float  # median |error|
    mean_ms: float  # mean |error|
    bias_ms: float  # mean signed error (predicted − reference): > 0 = predicted late
    within_50: float  # share of words with |error| ≤ 50 ms
    within_100: float  # share of words with |error| ≤ 100 ms


def summarize(errors_s: Sequence[float]) -> WordTimingSummary:
    """Signed start errors (s) → :class:`WordTimingSummary`. Raises ValueError when empty."""
    e = np.asarray(errors_s, dtype=np.float64) * 1000.0
    if e.size == 0:
        raise ValueError("summarize: no word errors to summarize")
    a = np.abs(e)
    return WordTimingSummary(int(e.size), float(np.median(a)), float(a.mean()), float(e.mean()),
                             float((a <= 50.0).mean()), float((a <= 100.0).mean()))


# --------------------------------------------------------------------------------------------
# A clip through a model's aligner


class _Batch(NamedTuple):  # the fields common.align reads
    texts: Tensor
    input_lengths: Tensor
    mels: Tensor
    output_lengths: Tensor


def clip_batch(wave: Tensor, tokens: Sequence[int], pad_samples: int = 5000) -> _Batch:
    """One clip as the dataset and collater present it: ``wave`` [S] (24 kHz, unpadded) padded with
    ``pad_samples`` of silence on each side, log-mel cut to an even frame count; ``tokens`` [T] are
    the dataset's ``[0] + ids + [0]``. → a batch of one for :func:`~tts_zoo_styletts2.stages.common.align`."""
    mel = log_mel(torch.nn.functional.pad(wave.float(), (pad_samples, pad_samples)))
    mel = mel[:, : mel.shape[-1] - mel.shape[-1] % 2]
    texts = torch.as_tensor(list(tokens), dtype=torch.long).unsqueeze(0)
    return _Batch(texts, torch.tensor([texts.shape[1]]), mel.unsqueeze(0), torch.tensor([mel.shape[-1]]))


def aligned_paths(model: torch.nn.Module, wave: Tensor, tokens: Sequence[int], sources: Sequence[str] = ("ctc",),
                  pad_samples: int = 5000) -> dict[str, Tensor]:
    """The model's text-aligner paths [T, F] (CPU, 0/1; F aligner frames of 2 mel frames) of one clip
    (``wave`` [S] unpadded, ``tokens`` [T] as :func:`clip_batch`), per ``source`` (``"attention"`` /
    ``"ctc"``, see :func:`~tts_zoo_styletts2.stages.common.align`), plus ``"uniform"``: the naive path
    over the same frames. No gradient; the model's mode is kept."""
    if getattr(model.text_aligner, "n_down", 1) != 1:
        raise ValueError("aligned_paths: word timing assumes aligner frames of 2 mel frames (n_down = 1)")
    batch = clip_batch(wave, tokens, pad_samples)
    device = next(model.parameters()).device
    batch = _Batch(*(t.to(device) for t in batch))
    n_tokens = len(tokens)
    paths: dict[str, Tensor] = {}
    with torch.no_grad():
        for source in sources:
            _, aln, _ = align(model, batch, zero_padding=True, source=source)  # type: ignore[arg-type]
            paths[source] = aln.path[0, :n_tokens].cpu()
    paths["uniform"] = uniform_path(n_tokens, int(batch.output_lengths[0]) // 2)
    return paths


def word_start_errors(predicted: Sequence[float], reference: Sequence[float], skip_first: bool = True) -> Optional[np.ndarray]:
    """Signed errors (s) predicted − reference, word by word (the first word left out with
    ``skip_first``: see the module's reference rule); None when the word counts differ (the phoneme
    words and the reference's words do not pair up: the clip cannot be scored)."""
    if len(predicted) != len(reference):
        return None
    errors = np.asarray(predicted, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return errors[1:] if skip_first else errors
