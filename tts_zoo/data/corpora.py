"""Corpus readers: a folder tree in a public corpus's layout → :class:`CorpusItem` records.

Readers only list what the tree says (id, audio path, transcript, speaker); they never open audio.
Missing or unreadable audio and empty transcripts are found and reported by ``prepare``.

Layouts:

* **LJSpeech** (Ito & Johnson 2017): ``metadata.csv`` (``id|text|normalized text``) and
  ``wavs/<id>.wav``; one speaker.
* **LibriTTS** (Zen et al. 2019): ``[<subset>/]<speaker>/<chapter>/<utt>.normalized.txt`` beside
  ``<utt>.wav``; the speaker is the first folder level under the subset.
* **VCTK** (Yamagishi et al. 2019): ``txt/<speaker>/<utt>.txt`` and the audio in
  ``wav48_silence_trimmed/<speaker>/<utt>_mic1.flac`` (0.92) or ``wav48/<speaker>/<utt>.wav`` (0.80).
* **CSV**: a file (or a folder holding ``metadata.csv``) with columns ``audio``, ``text`` and an
  optional ``speaker`` (a header row naming them, or that order); delimiter ``|``, ``,`` or tab;
  audio paths relative to the file's folder.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from tts_zoo.errors import TTSZooError

PathLike = Union[str, Path]

__all__ = ["CORPORA", "CorpusError", "CorpusItem", "read_corpus", "read_csv", "read_libritts", "read_ljspeech", "read_vctk"]


class CorpusError(TTSZooError):
    """The source folder does not have the expected layout."""


@dataclass(frozen=True)
class CorpusItem:
    """One utterance as listed by a corpus: ``audio`` may be missing or unreadable (checked later)."""

    id: str
    audio: Path
    text: str
    speaker: str


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def read_ljspeech(root: PathLike) -> list[CorpusItem]:
    """LJSpeech-1.1: the normalized transcript (third column), falling back to the raw one."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise CorpusError(f"{root}: not an LJSpeech folder (no metadata.csv)")
    items = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        text = parts[2].strip() if len(parts) > 2 and parts[2].strip() else (parts[1].strip() if len(parts) > 1 else "")
        items.append(CorpusItem(parts[0], root / "wavs" / f"{parts[0]}.wav", text, "ljspeech"))
    return items


def read_libritts(root: PathLike) -> list[CorpusItem]:
    """LibriTTS (or LibriTTS-R): one item per ``*.normalized.txt``; speaker = its grandparent folder."""
    root = Path(root)
    texts = sorted(root.rglob("*.normalized.txt"))
    if not texts:
        raise CorpusError(f"{root}: not a LibriTTS folder (no *.normalized.txt transcripts)")
    items = []
    for t in texts:
        utt = t.name[: -len(".normalized.txt")]
        items.append(CorpusItem(utt, t.with_name(f"{utt}.wav"), _read_text(t), t.parent.parent.name))
    return items


_VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48", "wav24", "wav")


def read_vctk(root: PathLike, mic: str = "mic1") -> list[CorpusItem]:
    """VCTK 0.92 (``<utt>_<mic>.flac``) or 0.80 (``<utt>.wav``); the first audio folder found wins."""
    root = Path(root)
    txt_dir = root / "txt"
    if not txt_dir.is_dir():
        raise CorpusError(f"{root}: not a VCTK folder (no txt/)")
    audio_dirs = [root / d for d in _VCTK_AUDIO_DIRS if (root / d).is_dir()] or [root / _VCTK_AUDIO_DIRS[0]]
    items = []
    for t in sorted(txt_dir.glob("*/*.txt")):
        speaker, utt = t.parent.name, t.stem
        candidates = [d / speaker / name for d in audio_dirs for name in (f"{utt}_{mic}.flac", f"{utt}.wav", f"{utt}.flac")]
        audio = next((c for c in candidates if c.is_file()), candidates[0])
        items.append(CorpusItem(utt, audio, _read_text(t), speaker))
    return items


_AUDIO_COLUMNS = ("audio", "path", "file", "filename", "wav", "audio_path")


def read_csv(source: PathLike) -> list[CorpusItem]:
    """A CSV/TSV/pipe-separated file of ``audio, text[, speaker]`` (see the module docstring)."""
    source = Path(source)
    path = source / "metadata.csv" if source.is_dir() else source
    if not path.is_file():
        raise CorpusError(f"{source}: no such CSV file (a folder needs a metadata.csv)")
    content = path.read_text(encoding="utf-8")
    first = content.splitlines()[0] if content.strip() else ""
    delimiter = max("|,\t", key=first.count) if first else "|"
    rows = [r for r in csv.reader(io.StringIO(content), delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise CorpusError(f"{path}: empty CSV")
    header = [c.strip().lower() for c in rows[0]]
    if "text" in header and any(c in header for c in _AUDIO_COLUMNS):
        a = next(header.index(c) for c in _AUDIO_COLUMNS if c in header)
        t = header.index("text")
        s = header.index("speaker") if "speaker" in header else None
        rows = rows[1:]
    else:
        a, t, s = 0, 1, (2 if len(rows[0]) > 2 else None)
    items = []
    for n, row in enumerate(rows):
        if len(row) <= max(a, t):
            raise CorpusError(f"{path}: row {n + 1} has {len(row)} columns, expected audio and text")
        rel = Path(row[a].strip())
        audio = rel if rel.is_absolute() else path.parent / rel
        speaker = row[s].strip() if s is not None and s < len(row) and row[s].strip() else "0"
        items.append(CorpusItem(rel.with_suffix("").as_posix(), audio, row[t].strip(), speaker))
    return items


CORPORA: dict[str, Callable[[Path], list[CorpusItem]]] = {
    "ljspeech": read_ljspeech,
    "libritts": read_libritts,
    "vctk": read_vctk,
    "csv": read_csv,
}


def read_corpus(kind: str, source: PathLike) -> list[CorpusItem]:
    """Dispatch on the corpus kind (``ljspeech``, ``libritts``, ``vctk``, ``csv``)."""
    if kind not in CORPORA:
        raise CorpusError(f"unknown corpus {kind!r}; expected one of {', '.join(CORPORA)} (or demo)")
    source = Path(source)
    if not source.exists():
        raise CorpusError(f"{source}: no such file or folder")
    return CORPORA[kind](source)
