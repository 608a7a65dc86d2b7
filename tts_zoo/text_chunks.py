"""Splitting long text into chunks a TTS model takes at once (never truncating).

A model takes a limited number of tokens (StyleTTS 2: PL-BERT's 512 positions, the leading 0
included). Text is cut at sentence ends first; a sentence still too long is cut at clause marks
(, ; : —), then at spaces, and the pieces are packed greedily back into chunks that fit. A single
word that does not fit is an error: nothing is ever dropped silently.

The functions work on plain text and on phoneme strings alike (espeak output keeps punctuation and
separates it by spaces: ``"ðə kˈæt sˈæt , ɔn ðə mˈæt ."``). Whether a piece fits is the caller's
``fits(piece) -> bool`` (e.g. "its tokens plus the prefix are at most 512"). No torch here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tts_zoo.errors import TTSZooError

__all__ = ["ChunkError", "chunk_text", "split_clauses", "split_sentences", "split_to_fit", "split_words"]


class ChunkError(TTSZooError, ValueError):
    """A piece of text cannot be split into chunks the model accepts (one word is too long)."""


# A sentence ends at . ! ? … (runs allowed), optionally followed by closing quotes/brackets,
# then whitespace.
_CLOSERS = "\"'”’»)]"
_SENTENCE_END = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*(?=\s)")
_PARAGRAPH = re.compile(r"\n\s*\n")
# Clause marks followed by whitespace (a comma inside a number, "3,5", is not a boundary).
_CLAUSE_END = re.compile(rf"[,;:—–]+[{re.escape(_CLOSERS)}]*(?=\s)")
# Words that end with a period without ending a sentence (checked case-insensitively).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e cf no vol fig approx dept est inc ltd co mt ft".split()
)


def split_sentences(text: str, abbreviations: bool = True) -> list[str]:
    """Cut ``text`` after every sentence end (. ! ? … plus closing quotes, before whitespace).

    With ``abbreviations`` (for plain text), a period does not end a sentence after a known
    abbreviation ("Dr."), a single letter ("J. Smith") or when the next word starts in lower case.
    Phoneme strings (all lower case) need ``abbreviations=False``. A blank line (a paragraph break)
    always ends a sentence, so a title without a period stands alone. Empty pieces are dropped.
    """
    pieces = []
    for paragraph in _PARAGRAPH.split(text):
        start = 0
        for m in _SENTENCE_END.finditer(paragraph):
            if abbreviations and not _ends_sentence(paragraph, m):
                continue
            pieces.append(paragraph[start:m.end()])
            start = m.end()
        pieces.append(paragraph[start:])
    return [" ".join(p.split()) for p in pieces if p.strip()]


def _ends_sentence(text: str, m: re.Match) -> bool:
    """A lone period after an abbreviation or an initial, or before a lower-case word, ends no sentence."""
    if m.group().rstrip(_CLOSERS) != ".":
        return True
    words = text[:m.start()].split()
    word = words[-1].lstrip("\"'“‘«([").lower() if words else ""
    following = text[m.end():].lstrip()[:1]
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or following.islower())


def split_clauses(text: str) -> list[str]:
    """Cut after every clause mark (, ; : — –) that is followed by whitespace."""
    pieces, start = [], 0
    for m in _CLAUSE_END.finditer(text):
        pieces.append(text[start:m.end()])
        start = m.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def split_words(text: str) -> list[str]:
    return text.split()


def _pack(pieces: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Join consecutive pieces (with one space) as long as the result fits."""
    chunks: list[str] = []
    for piece in pieces:
        if chunks and fits(joined := f"{chunks[-1]} {piece}"):
            chunks[-1] = joined
        else:
            chunks.append(piece)
    return chunks


def split_to_fit(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Chunks of ``text`` that each fit: ``text`` itself if it fits, else its clauses packed
    greedily; a clause that does not fit on its own is cut at spaces into chunks of its own (the
    clause boundaries around it stay chunk boundaries). Raises :class:`ChunkError` for a word that
    does not fit on its own."""
    text = text.strip()
    if fits(text):
        return [text]
    chunks: list[str] = []
    run: list[str] = []  # consecutive clauses that fit, packed together
    for clause in split_clauses(text):
        if fits(clause):
            run.append(clause)
            continue
        chunks += _pack(run, fits)
        run = []
        words = split_words(clause)
        for word in words:
            if not fits(word):
                shown = word if len(word) <= 40 else word[:40] + "…"
                raise ChunkError(f"the word '{shown}' alone is longer than the model's token limit; shorten or split it")
        chunks += _pack(words, fits)
    return chunks + _pack(run, fits)


def chunk_text(text: str, fits: Callable[[str], bool], abbreviations: bool = True) -> list[str]:
    """Sentences of ``text`` (one chunk each), overlong ones split with :func:`split_to_fit`."""
    return [chunk for sentence in split_sentences(text, abbreviations) for chunk in split_to_fit(sentence, fits)]
