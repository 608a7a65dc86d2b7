"""Pre-phonemized input: the text already is the phoneme string (e.g. the training lists)."""

from __future__ import annotations

import unicodedata

from tts_zoo_styletts2.text.cleaner import CleanerFrontend, clean_whitespace


class PhonemesFrontend(CleanerFrontend):
    """Pre-phonemized input (IPA as in the StyleTTS 2 training lists): whitespace cleanup, then ids.

    :meth:`phonemize` only collapses whitespace and applies canonical composition (NFC, which keeps
    every symbol of the table as it is; NFKC would not: it turns ʰ ʲ ʷ into letters). Characters
    outside the 178-symbol table are dropped and counted by :meth:`encode`.
    """

    name = "phonemes"

    def phonemize(self, text: str) -> str:
        return clean_whitespace(unicodedata.normalize("NFC", text))

    def phonemize_batch(self, texts: list[str]) -> list[str]:
        return [self.phonemize(t) for t in texts]
