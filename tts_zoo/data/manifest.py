"""Manifests: the prepared corpus as the trainer reads it.

A manifest is a JSONL file, one :class:`Utterance` per line::

    {"id": "LJ001-0001", "audio": "/data/LJSpeech-1.1/wavs/LJ001-0001.wav", "text": "Printing, ...",
     "phonemes": "pɹˈɪntɪŋ , ...", "speaker": "ljspeech", "duration": 9.66, "sample_rate": 22050}

``audio`` is stored relative to the manifest's folder when the file lies under it (the demo corpus)
and absolute otherwise; :func:`read_manifest` resolves it. ``sample_rate`` is the file's own rate
(the dataset resamples to 24 kHz when loading).

Beside it go the reference StyleTTS 2 lists (``path|phonemes|speaker_id``, one utterance a line,
as ``train_list.txt`` / ``val_list.txt`` of yl4579/StyleTTS2) and ``speakers.json`` (name → id).
Every write is atomic: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, Path]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # (reading the umask means setting it)

__all__ = [
    "Utterance",
    "atomic_write_text",
    "read_list",
    "read_manifest",
    "read_speakers",
    "speaker_ids",
    "write_list",
    "write_manifest",
]


@dataclass(frozen=True)
class Utterance:
    """One manifest record (see the module docstring for the JSON form)."""

    id: str
    audio: str
    text: str
    phonemes: str
    speaker: str
    duration: float
    sample_rate: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _relative_audio(audio: str, root: Path) -> str:
    """The path as stored: relative to ``root`` when under it, else absolute."""
    p = Path(audio)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


def write_manifest(path: PathLike, records: Iterable[Utterance]) -> None:
    """Write records as JSONL (atomically); audio paths under the manifest's folder become relative."""
    path = Path(path)
    lines = [replace(r, audio=_relative_audio(r.audio, path.parent)).to_json() for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_manifest(path: PathLike) -> list[Utterance]:
    """Read a JSONL manifest; relative audio paths are resolved against the manifest's folder."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d: dict[str, Any] = json.loads(line)
            audio = Path(d["audio"])
            records.append(
                Utterance(
                    id=str(d["id"]),
                    audio=str(audio if audio.is_absolute() else path.parent / audio),
                    text=str(d.get("text", "")),
                    phonemes=str(d["phonemes"]),
                    speaker=str(d.get("speaker", "0")),
                    duration=float(d.get("duration", 0.0)),
                    sample_rate=int(d.get("sample_rate", 0)),
                )
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: bad manifest line ({e})") from e
    return records


def speaker_ids(records: Iterable[Utterance]) -> dict[str, int]:
    """Speaker name → integer id, in sorted name order (numeric names sort numerically)."""
    names = {r.speaker for r in records}
    key = (lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))  # noqa: E731
    return {name: i for i, name in enumerate(sorted(names, key=key))}


def read_speakers(path: PathLike) -> dict[str, int]:
    """Read ``speakers.json`` (name → id)."""
    return {str(k): int(v) for k, v in json.loads(Path(path).read_text(encoding="utf-8")).items()}


def write_list(path: PathLike, records: Sequence[Utterance], speakers: dict[str, int]) -> None:
    """Write the reference's ``path|phonemes|speaker_id`` list (atomically).

    Paths are written as in the manifest (relative to the list's folder when under it): pass that
    folder as the reference's ``root_path``.
    """
    path = Path(path)
    lines = []
    for r in records:
        if "|" in r.phonemes or "\n" in r.phonemes:
            raise ValueError(f"{r.id}: phonemes contain '|' or a newline, which the list format cannot hold")
        lines.append(f"{_relative_audio(r.audio, path.parent)}|{r.phonemes}|{speakers[r.speaker]}\n")
    atomic_write_text(path, "".join(lines))


def read_list(path: PathLike, root: Optional[PathLike] = None) -> list[Utterance]:
    """Read a reference ``path|phonemes|speaker`` list (speaker defaults to 0 as in the reference).

    Audio paths are joined to ``root`` (default: the list's folder). ``duration`` and
    ``sample_rate`` are unknown (0).
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) not in (2, 3):
            raise ValueError(f"{path}:{n}: expected 'path|phonemes|speaker', got {len(parts)} fields")
        audio, phonemes = parts[0], parts[1]
        speaker = parts[2].strip() if len(parts) == 3 else "0"
        records.append(Utterance(Path(audio).stem, str(root / audio), phonemes, phonemes, speaker, 0.0, 0))
    return records
