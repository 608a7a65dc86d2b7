"""The built-in demo corpus: English sentences spoken by espeak-ng voices, made offline in seconds.

* **Text**: sentences from the docstrings of Python's own standard library (parsed with ``ast``, no
  import, no download), filtered to plain prose, shuffled with the seed.
* **Speakers**: espeak-ng accents × voice variants (``en-us``, ``en+m3``, ``en-gb-scotland+m1``, …)
  with their own rate, pitch and pitch range (:data:`DEFAULT_SPEAKERS`).
* **Audio**: espeak-ng 1.52 from the ``espeakng-loader`` wheel, driven through ctypes (no apt), at its
  native 22 050 Hz, resampled to 24 kHz with :func:`tts_zoo.audio.resample` and written as 16-bit
  WAV under ``out_dir/wavs/<speaker>/``.

espeak-ng keeps state between utterances (even across ``espeak_Terminate``), so a clip would depend on
what was spoken before it. Each utterance therefore runs in a freshly loaded private copy of the
library (dlopen → speak → dlclose, ~1 ms), with its random generators (breath noise) seeded from the
text: the corpus is the same for a given seed whatever the number of worker processes. Files already made with the same settings are kept (``demo.json``).

:meth:`Espeak.synthesize_words` also returns espeak-ng's own word start times (its ``espeakEVENT_WORD``
events), a reference for measuring alignments (``benchmarks/alignment.py``).
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import sysconfig
import tempfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from tts_zoo.data.corpora import CorpusItem
from tts_zoo.data.manifest import atomic_write_text

PathLike = Union[str, Path]

__all__ = ["DEFAULT_SPEAKERS", "DemoSpeaker", "Espeak", "PhonemeStart", "WordStart", "build_demo", "demo_sentences", "demo_speakers"]

ESPEAK_SAMPLE_RATE = 22050
_FORMAT = 1  # bump when the way clips are made changes (invalidates kept files)


@dataclass(frozen=True)
class DemoSpeaker:
    """An espeak-ng voice (``accent+variant``) with rate (words/min), pitch and range (0-100)."""

    name: str
    voice: str
    rate: int = 175
    pitch: int = 50
    range: int = 50


DEFAULT_SPEAKERS: tuple[DemoSpeaker, ...] = (
    DemoSpeaker("us_m", "en-us", 170, 45, 50),
    DemoSpeaker("us_f", "en-us+f2", 160, 62, 60),
    DemoSpeaker("gb_m", "en+m3", 180, 40, 45),
    DemoSpeaker("gb_f", "en+f4", 165, 58, 55),
    DemoSpeaker("scot_m", "en-gb-scotland+m1", 175, 48, 40),
    DemoSpeaker("rp_f", "en-gb-x-rp+f1", 155, 66, 65),
    DemoSpeaker("carib_m", "en-029+m2", 185, 35, 50),
    DemoSpeaker("nyc_f", "en-us-nyc+f3", 170, 55, 70),
)


def demo_speakers(names: Optional[str] = None) -> tuple[DemoSpeaker, ...]:
    """The demo voices named in a comma-separated list (None or empty: all of :data:`DEFAULT_SPEAKERS`)."""
    if not names or not names.strip():
        return DEFAULT_SPEAKERS
    by_name = {s.name: s for s in DEFAULT_SPEAKERS}
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in by_name]
    if unknown:
        from tts_zoo.errors import TTSZooError

        raise TTSZooError(f"--speakers: unknown demo voice(s) {', '.join(unknown)} (available: {', '.join(by_name)})")
    return tuple(by_name[n] for n in dict.fromkeys(chosen))


# --------------------------------------------------------------------------------------------
# Text

_SENTENCE = re.compile(r"[A-Z][a-z]+(?: [A-Za-z]+(?:'[a-z]+)?[,;]?)* [a-z]+[.!?]")


def _docstring_sentences(path: Path, min_chars: int, max_chars: int) -> set[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    found = set()
    nodes: list[Any] = [tree]
    for node in nodes:  # the module, its classes and functions, and their methods (not nested code)
        if isinstance(node, (ast.Module, ast.ClassDef)):
            nodes.extend(n for n in node.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
        for para in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
            if ">>>" in para or "::" in para:  # examples and literal blocks are code, not prose
                continue
            for s in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
                if min_chars <= len(s) <= max_chars and len(s.split()) >= 5 and _SENTENCE.fullmatch(s):
                    found.add(s)
    return found


def demo_sentences(n: int, seed: int = 0, *, min_chars: int = 30, max_chars: int = 180) -> list[str]:
    """``n`` distinct prose sentences from the standard library's docstrings (top-level modules),
    in a seeded random order. Deterministic for a given seed and Python version."""
    sentences = list(_sentence_pool(min_chars, max_chars))
    if len(sentences) < n:
        raise ValueError(f"only {len(sentences)} suitable docstring sentences in the standard library, {n} requested")
    random.Random(seed).shuffle(sentences)
    return sentences[:n]


@lru_cache(maxsize=4)
def _sentence_pool(min_chars: int, max_chars: int) -> tuple[str, ...]:
    pool: set[str] = set()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        pool |= _docstring_sentences(path, min_chars, max_chars)
    return tuple(sorted(pool))


# --------------------------------------------------------------------------------------------
# espeak-ng through ctypes

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize into the callback, return when done
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: report errors instead of exit()
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_LIBC = ctypes.CDLL(None)
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7  # espeak_EVENT_TYPE
_PHONEME_EVENTS, _PHONEME_IPA = 0x0001, 0x0002  # espeak_Initialize options: phoneme events, named in IPA


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of espeak-ng's speak_lib.h (the synth callback gets an array of them, ended by
    type 0). ``text_position`` is 1-based, in characters; ``audio_position`` in ms of output audio."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]  # id: a union of int / char* / char[8]


class PhonemeStart(NamedTuple):
    """A phoneme espeak-ng spoke: its IPA (a stress mark before a stressed vowel, as in its phoneme
    output: ``ˈoʊ``) and the time espeak-ng starts it (seconds from the clip's start)."""

    phoneme: str
    start: float


class WordStart(NamedTuple):
    """A word espeak-ng spoke: its text and the time espeak-ng starts it (seconds from the clip's start)."""

    word: str
    start: float


class Espeak:
    """espeak-ng speech synthesis from a private copy of the wheel's library.

    ``synthesize(text, speaker) → int16 [S]`` at :data:`ESPEAK_SAMPLE_RATE`. The copy lives in
    ``library_dir`` (default: a fresh temporary folder, removed by :meth:`close`); one copy may be
    shared by several processes (each maps its own).
    """

    def __init__(self, library_dir: Optional[PathLike] = None):
        import espeakng_loader

        self._data = espeakng_loader.get_data_path().encode()
        self._owned = library_dir is None
        self.library_dir = Path(library_dir or tempfile.mkdtemp(prefix="tts-zoo-espeak-"))
        self._library = self.library_dir / "libespeak-ng-demo.so"
        if not self._library.exists():
            shutil.copy(espeakng_loader.get_library_path(), self._library)
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []  # word events of the last clip: (text_position, length, ms)
        self._phonemes: list[tuple[str, int]] = []  # phoneme events of the last clip: (IPA, ms)
        self._callback = _CALLBACK(self._collect)  # kept alive: espeak holds the pointer

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        if events:  # reading the event list changes nothing in the audio
            event = ctypes.cast(events, ctypes.POINTER(_Event))
            i = 0
            while event[i].type != _EVENT_LIST_TERMINATED:
                if event[i].type == _EVENT_WORD:
                    self._words.append((event[i].text_position, event[i].length, event[i].audio_position))
                elif event[i].type == _EVENT_PHONEME:  # id: the IPA, NUL-padded to 8 bytes
                    name = bytes(event[i].id).split(b"\0")[0].decode("utf-8", "replace")
                    self._phonemes.append((name, event[i].audio_position))
                i += 1
        return 0  # continue

    def version(self) -> str:
        lib = ctypes.CDLL(str(self._library))
        lib.espeak_Info.restype = ctypes.c_char_p
        try:
            return lib.espeak_Info(None).decode()
        finally:
            _dlclose(lib)

    def synthesize(self, text: str, speaker: DemoSpeaker, phoneme_events: bool = False) -> np.ndarray:
        """``phoneme_events``: also record espeak-ng's phoneme events (in IPA) of the clip; the audio
        is the same either way."""
        lib = ctypes.CDLL(str(self._library))  # a fresh instance: no state from earlier clips
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            options = _DONT_EXIT | (_PHONEME_EVENTS | _PHONEME_IPA if phoneme_events else 0)
            if lib.espeak_Initialize(_SYNCHRONOUS, 0, self._data, options) != ESPEAK_SAMPLE_RATE:
                raise RuntimeError("espeak-ng failed to initialise (or speaks at an unexpected rate)")
            lib.espeak_SetSynthCallback(self._callback)
            if lib.espeak_SetVoiceByName(speaker.voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {speaker.voice!r}")
            for param, value in ((_RATE, speaker.rate), (_PITCH, speaker.pitch), (_RANGE, speaker.range)):
                lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._words, self._phonemes = [], [], []
            data = text.encode("utf-8")
            # Breath noise of some variants: espeak's own generator (seeded from the clock at
            # initialisation) and libc's rand(); both seeded from the clip instead.
            seed = zlib.crc32(data + speaker.voice.encode())
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            _LIBC.srand(seed)
            if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
                raise RuntimeError(f"espeak-ng failed to speak {text!r}")
            lib.espeak_Synchronize()
            lib.espeak_Terminate()
        finally:
            _dlclose(lib)
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def synthesize_words(self, text: str, speaker: DemoSpeaker, sample_rate: int = 24000) -> tuple[Any, list[WordStart]]:
        """The clip of :meth:`synthesize` as the demo corpus stores it (float32 torch tensor [S] at
        ``sample_rate``, before 16-bit quantisation) and espeak-ng's word start times.

        One :class:`WordStart` per ``espeakEVENT_WORD``: the time (``audio_position``, ms resolution)
        at which espeak-ng starts the word (a stop's silent closure included; the first word at 0,
        before the voice's leading silence of up to ~60 ms). espeak-ng joins some unstressed words to the next
        one ("in the" → ``ɪnðə``) and then reports one event for both (``word`` is the first); its
        phoneme output (phonemizer) has the same words, so events and phoneme words pair up.
        Resampling keeps times (zero-phase filter), so the starts hold at any ``sample_rate``."""
        pcm = self.synthesize(text, speaker)
        return _float_wave(pcm, sample_rate), self._word_starts(text)

    def _word_starts(self, text: str) -> list[WordStart]:
        """The word events of the last clip, spoken from ``text``."""
        chars = list(text)  # text_position counts characters (UTF-8 decoded), from 1
        return [WordStart("".join(chars[pos - 1 : pos - 1 + length]), ms / 1000.0) for pos, length, ms in self._words]

    def synthesize_timings(self, text: str, speaker: DemoSpeaker,
                           sample_rate: int = 24000) -> tuple[Any, list[WordStart], list[PhonemeStart]]:
        """The clip and word starts of :meth:`synthesize_words`, and espeak-ng's phoneme start times,
        from one synthesis: one :class:`PhonemeStart` per ``espeakEVENT_PHONEME`` that names a phoneme
        (the events of pauses are nameless and left out), in order. Their IPA strings, concatenated word
        by word, are espeak-ng's phoneme output of the text (what the espeak frontend phonemizes)
        without its spaces and punctuation: a phoneme-level reference for alignments
        (``benchmarks/alignment.py``)."""
        pcm = self.synthesize(text, speaker, phoneme_events=True)
        phonemes = [PhonemeStart(name, ms / 1000.0) for name, ms in self._phonemes if name]
        return _float_wave(pcm, sample_rate), self._word_starts(text), phonemes

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.library_dir, ignore_errors=True)


def _float_wave(pcm: np.ndarray, sample_rate: int) -> Any:
    """espeak's int16 samples → float32 torch tensor [S'] at ``sample_rate`` (what the corpus writes)."""
    import torch

    from tts_zoo.audio import resample

    wave = resample(torch.from_numpy(pcm.astype(np.float32) / 32768.0), ESPEAK_SAMPLE_RATE, sample_rate)
    return wave.clamp(-1.0, 32767 / 32768)


def _dlclose(lib: ctypes.CDLL) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")  # POSIX / Windows
    close(lib._handle)


# --------------------------------------------------------------------------------------------
# Building the corpus (worker processes: one Espeak each, sharing one library copy)

_WORKER: dict[str, Any] = {}


def _init_worker(library_dir: str, single_thread: bool = True) -> None:
    if single_thread:  # one process per core already
        import torch

        torch.set_num_threads(1)
    _WORKER["espeak"] = Espeak(library_dir)


def _make_clips(jobs: list[tuple[str, str, dict[str, Any], int]]) -> int:
    """Speak, resample to ``sample_rate`` and write each (path, text, speaker, sample_rate) job."""
    import soundfile

    espeak: Espeak = _WORKER["espeak"]
    for path, text, speaker, sample_rate in jobs:
        wave = _float_wave(espeak.synthesize(text, DemoSpeaker(**speaker)), sample_rate)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        soundfile.write(str(tmp), wave.numpy(), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, target)  # atomic: a killed run leaves no half-written clip
    return len(jobs)


def build_demo(
    out_dir: PathLike,
    *,
    n_utterances: int = 320,
    speakers: Sequence[DemoSpeaker] = DEFAULT_SPEAKERS,
    seed: int = 0,
    sample_rate: int = 24000,
    workers: Optional[int] = None,
    progress: Any = None,
) -> list[CorpusItem]:
    """Synthesize the demo corpus into ``out_dir/wavs`` and return its items (for ``prepare``).

    Utterance i speaks sentence i with speaker ``order[i]`` (speakers balanced, order seeded). Clips
    already present with identical settings are kept; clips of an earlier, different demo are removed.
    """
    out = Path(out_dir)
    sentences = demo_sentences(n_utterances, seed)
    order = [speakers[i % len(speakers)] for i in range(n_utterances)]
    random.Random(seed + 1).shuffle(order)
    probe = Espeak()
    try:
        version = probe.version()
    finally:
        probe.close()

    index_path = out / "demo.json"
    old = json.loads(index_path.read_text(encoding="utf-8")).get("clips", {}) if index_path.exists() else {}
    items, index, jobs = [], {}, []
    for i, (text, spk) in enumerate(zip(sentences, order)):
        uid = f"{spk.name}_{i:04d}"
        rel = f"wavs/{spk.name}/{uid}.wav"
        key = hashlib.sha256(json.dumps([_FORMAT, version, sample_rate, text, asdict(spk)]).encode()).hexdigest()[:16]
        index[rel] = key
        items.append(CorpusItem(uid, out / rel, text, spk.name))
        if old.get(rel) != key or not (out / rel).is_file():
            jobs.append((str(out / rel), text, asdict(spk), sample_rate))
    for rel in set(old) - set(index):  # clips of an earlier demo with other settings
        (out / rel).unlink(missing_ok=True)

    task = progress.add_task("synthesizing", total=len(jobs)) if progress is not None else None
    workers = max(1, min(workers or os.cpu_count() or 1, math.ceil(len(jobs) / 8)))
    chunk = max(1, math.ceil(len(jobs) / (4 * workers)))
    batches = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    library_dir = tempfile.mkdtemp(prefix="tts-zoo-espeak-")
    try:
        if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
            _init_worker(library_dir, single_thread=False)
            for n in map(_make_clips, batches):
                if task is not None:
                    progress.advance(task, n)
        else:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(library_dir,)) as pool:
                for n in pool.map(_make_clips, batches):
                    if task is not None:
                        progress.advance(task, n)
    finally:
        _WORKER.clear()
        shutil.rmtree(library_dir, ignore_errors=True)
    settings = {"espeak_ng": version, "seed": seed, "sample_rate": sample_rate, "speakers": [asdict(s) for s in speakers]}
    atomic_write_text(index_path, json.dumps({"settings": settings, "clips": index}, indent=1))
    return items
