"""The reference-exact ``TextCleaner`` and the helpers the StyleTTS 2 text frontends share.

Two stages, kept apart on purpose:

* :func:`normalize_text` runs on *raw text* before phonemization or character lookup (Unicode NFKC,
  variant quotes / dashes / spaces mapped to the symbol table's forms). It is not part of the
  cleaner: the fixtures (``textcleaner/examples``) show that the reference cleaner itself drops
  ``‘ ’ é ü`` from a phoneme string, and that behaviour must stay exact.
* :class:`TextCleaner` maps a phoneme (or character) string to ids one character at a time, exactly
  as the reference's ``text_utils.TextCleaner``; characters outside the table are dropped and
  counted (the reference printed the whole text for each one).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, NamedTuple

from tts_zoo.interfaces import TextFrontend
from tts_zoo_styletts2.text.symbols import SYMBOLS, symbol_to_id

# Variants → the table's forms (applied after NFKC). The table has ' " “ ” « » — … but no
# curly single quotes, en dashes or hyphen variants.
_VARIANTS = str.maketrans(
    {
        "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "´": "'", "`": "'",
        "„": "“", "‟": "”", "″": '"',
        "‐": "-", "−": "-",  # hyphen variants → ASCII hyphen (espeak joins hyphenated words)
        "‒": "—", "–": "—", "―": "—", "⸺": "—", "⸻": "—",
        "\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\u2060": None, "\ufeff": None,
    }
)
_WHITESPACE = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"(?<!\.)\.\.\.(?!\.)")  # exactly three dots (NFKC turns … into ...)


def clean_whitespace(text: str) -> str:
    """Collapse every run of whitespace (tabs, newlines, no-break spaces) to one space and strip."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_text(text: str) -> str:
    """Raw text → normalized text: NFKC, variant quotes/dashes/spaces mapped to the table's forms,
    ``...`` → ``…``, whitespace collapsed. Apply to text, never to phoneme strings (NFKC would turn
    the modifier letters ʰ ʲ ʷ … of the table into plain letters)."""
    # Map before NFKC too: NFKC decomposes some variants (´ → space + combining acute).
    text = unicodedata.normalize("NFKC", text.translate(_VARIANTS)).translate(_VARIANTS)
    return clean_whitespace(_ELLIPSIS.sub("…", text))


def strip_diacritics(text: str) -> str:
    """Remove combining marks after canonical decomposition (é → e, ü → u, ñ → n)."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


class Encoded(NamedTuple):
    """Ids of a string and the characters dropped from it (in order, repeats kept)."""

    ids: list[int]
    dropped: list[str]


class TextCleaner:
    """Character → id lookup, exactly as the reference ``TextCleaner`` (fixtures README section 4).

    A duplicated symbol maps to its later id (``'`` → 176). Characters outside the table are dropped;
    :meth:`encode` returns them and ``oov_counts`` accumulates them over every call.
    """

    def __init__(self, symbols: list[str] = SYMBOLS):
        self.symbols = list(symbols)
        self.lookup = symbol_to_id(self.symbols)
        self.oov_counts: Counter[str] = Counter()

    def encode(self, text: str) -> Encoded:
        ids: list[int] = []
        dropped: list[str] = []
        for char in text:
            i = self.lookup.get(char)
            if i is None:
                dropped.append(char)
            else:
                ids.append(i)
        self.oov_counts.update(dropped)
        return Encoded(ids, dropped)

    def __call__(self, text: str) -> list[int]:
        return self.encode(text).ids


class CleanerFrontend(TextFrontend):
    """Shared base of the StyleTTS 2 frontends: encoding through the reference :class:`TextCleaner`.

    ``oov_counts`` counts every character dropped by :meth:`encode` since construction;
    ``last_dropped`` lists those of the latest call.
    """

    name = "?"

    def __init__(self) -> None:
        self.cleaner = TextCleaner(SYMBOLS)
        self.symbols = self.cleaner.symbols
        self.last_dropped: list[str] = []

    @property
    def oov_counts(self) -> Counter[str]:
        return self.cleaner.oov_counts

    def encode_with_oov(self, phonemes: str) -> Encoded:
        """Ids and the dropped characters of one phoneme string."""
        encoded = self.cleaner.encode(phonemes)
        self.last_dropped = encoded.dropped
        return encoded

    def encode(self, phonemes: str) -> list[int]:
        return self.encode_with_oov(phonemes).ids

    def describe(self) -> dict[str, Any]:
        return {"frontend": self.name, "n_symbols": len(self.symbols)}
