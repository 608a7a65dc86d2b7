"""espeak-ng phonemes through phonemizer, as the reference StyleTTS 2 inference does.

The reference (Demo notebooks): ``EspeakBackend(language='en-us', preserve_punctuation=True,
with_stress=True).phonemize([text])``, then NLTK's ``word_tokenize`` on the phoneme string and the
tokens joined by spaces ("… mˈɑːdəlz." → "… mˈɑːdəlz ."). NLTK needs downloaded data, so
:func:`word_tokenize` here is a small re-statement of the splitting rules that matter for phoneme
strings (see its docstring for the differences).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any, Literal

from tts_zoo_styletts2.text.cleaner import CleanerFrontend, normalize_text

# --- word tokenisation (NLTK NLTKWordTokenizer + punkt sentence ends, as they act on phonemes) ---

_CLOSERS = "\\]\\)}>\"'»”’"
_SPLITS = [
    (re.compile(r"([«“‘„»”’\"]|`+)"), r" \1 "),  # quotes (NLTK pads them; see word_tokenize)
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),  # comma/colon, unless a digit follows (3,5)
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),  # runs of dots
    (re.compile(r"[;@#$%&*?!]"), r" \g<0> "),
    (re.compile("[\u2012-\u2015]"), r" \g<0> "),  # figure/en/em dashes, horizontal bar
    # A sentence-final period (before optional closers, then a space or the end): the period
    # after the last word of every sentence (punkt splits sentences there, then NLTK splits it off).
    (re.compile(rf"([^.])(\.)(?=[{_CLOSERS}]*(?:\s|$))"), r"\1 \2 "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),  # brackets
    (re.compile(r"--"), r" -- "),
]


def word_tokenize(text: str) -> list[str]:
    """Split punctuation off words the way NLTK's ``word_tokenize`` does on a phoneme string.

    Split off: , : (not before a digit) ; ? ! * @ # $ % & brackets, dashes (U+2012-2015), ``--``,
    runs of two or more dots, quotes, and the period that ends a sentence. Kept attached, as in NLTK:
    ``…``, ``¡``, ``¿`` and periods inside a token (``3.5``).
    Differences from NLTK (deliberate): ``"`` stays ``"`` (NLTK rewrites it to the two-character
    tokens `````` / ``''``, which the symbol table cannot encode faithfully), and English clitic
    splitting (``n't``, ``'s``) is not done (espeak's phonemes contain no apostrophes).
    """
    for pattern, replacement in _SPLITS:
        text = pattern.sub(replacement, text)
    return text.split()


# --- the espeak backend, initialised once per settings ---


@lru_cache(maxsize=None)
def _use_bundled_espeak() -> bool:
    """Point phonemizer at the espeak-ng of the ``espeakng-loader`` wheel (no system install)."""
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    try:
        import espeakng_loader
    except ImportError:  # fall back to a system espeak-ng, if any
        return False
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    return True


@lru_cache(maxsize=8)
def _backend(language: str, with_stress: bool, preserve_punctuation: bool, language_switch: str):
    _use_bundled_espeak()
    from phonemizer.backend import EspeakBackend

    backend = EspeakBackend(
        language=language,
        preserve_punctuation=preserve_punctuation,
        with_stress=with_stress,
        language_switch=language_switch,
    )
    return backend, threading.Lock()  # espeak-ng keeps global state: one call at a time


class EspeakFrontend(CleanerFrontend):
    """espeak-ng IPA phonemes (phonemizer), word-tokenised as in the reference StyleTTS 2 inference.

    Text is normalized (:func:`~tts_zoo_styletts2.text.cleaner.normalize_text`), phonemized by
    espeak-ng (bundled by the ``espeakng-loader`` wheel) with stress marks and punctuation kept,
    split into words and punctuation (:func:`word_tokenize`) and joined by spaces; ids come from the
    reference ``TextCleaner`` (178 symbols). espeak-ng versions phonemize differently (1.52 here,
    1.51 for the official checkpoints): :meth:`describe` records the version.

    Args:
        language: espeak-ng voice / language code.
        with_stress: Keep primary/secondary stress marks (ˈ ˌ).
        preserve_punctuation: Keep punctuation marks in the phoneme string.
        tokenize: Split punctuation off words and join with spaces (the reference's NLTK step).
        language_switch: What to do when espeak switches language inside a sentence; the reference
            used phonemizer's default "keep-flags", which leaves "(fr)"-style flags in the phonemes.
    """

    name = "espeak"

    def __init__(
        self,
        language: str = "en-us",
        with_stress: bool = True,
        preserve_punctuation: bool = True,
        tokenize: bool = True,
        language_switch: Literal["keep-flags", "remove-flags", "remove-utterance"] = "remove-flags",
    ):
        super().__init__()
        self.language = language
        self.with_stress = with_stress
        self.preserve_punctuation = preserve_punctuation
        self.tokenize = tokenize
        self.language_switch = language_switch

    def _backend(self):
        return _backend(self.language, self.with_stress, self.preserve_punctuation, self.language_switch)

    def phonemize_batch(self, texts: list[str]) -> list[str]:
        """Phonemize many texts in one backend call (much faster than one call per text)."""
        normalized = [normalize_text(t) for t in texts]
        todo = [i for i, t in enumerate(normalized) if t]  # phonemizer drops empty texts
        results = [""] * len(texts)
        if todo:
            backend, lock = self._backend()
            with lock:
                phonemes = backend.phonemize([normalized[i] for i in todo], strip=True, njobs=1)
                if len(phonemes) != len(todo):  # phonemizer drops texts that give no phonemes ("...")
                    phonemes = [(backend.phonemize([normalized[i]], strip=True, njobs=1) or [""])[0] for i in todo]
            for i, p in zip(todo, phonemes, strict=True):
                results[i] = " ".join(word_tokenize(p) if self.tokenize else p.split())
        return results

    def phonemize(self, text: str) -> str:
        return self.phonemize_batch([text])[0]

    def describe(self) -> dict[str, Any]:
        import phonemizer

        backend, _ = self._backend()
        return {
            **super().describe(),
            "phonemizer": phonemizer.__version__,
            "espeak_ng": ".".join(str(v) for v in backend.version()),
            "espeak_bundled": _use_bundled_espeak(),
            "language": self.language,
            "with_stress": self.with_stress,
            "preserve_punctuation": self.preserve_punctuation,
            "tokenize": self.tokenize,
            "language_switch": self.language_switch,
        }
