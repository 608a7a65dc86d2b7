"""Graphemes as tokens: no phonemizer (languages without an espeak voice, quick experiments)."""

from __future__ import annotations

from typing import Any

from tts_zoo_styletts2.text.cleaner import CleanerFrontend, normalize_text, strip_diacritics


class CharactersFrontend(CleanerFrontend):
    """Characters of the normalized text as tokens, in the StyleTTS 2 symbol table (no phonemizer).

    The text is normalized (NFKC, variant quotes/dashes/spaces mapped to the table's forms); a
    character outside the table is replaced by its form without diacritics when that is in the
    table (é → e). Whatever is still outside the table is dropped and counted by :meth:`encode`.

    Args:
        strip_diacritics: Replace out-of-table accented letters by their base letters.
    """

    name = "characters"

    def __init__(self, strip_diacritics: bool = True):
        super().__init__()
        self.strip_diacritics = strip_diacritics

    def _fallback(self, char: str) -> str:
        if char in self.cleaner.lookup:
            return char
        base = strip_diacritics(char)
        return base if base and all(c in self.cleaner.lookup for c in base) else char

    def phonemize(self, text: str) -> str:
        text = normalize_text(text)
        if self.strip_diacritics:
            text = "".join(self._fallback(c) for c in text)
        return text

    def phonemize_batch(self, texts: list[str]) -> list[str]:
        return [self.phonemize(t) for t in texts]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "strip_diacritics": self.strip_diacritics}
