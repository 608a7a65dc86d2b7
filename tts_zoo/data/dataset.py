"""The training dataset: manifest records → (mel, tokens, reference clip, OOD text) samples.

The equivalent of the reference StyleTTS 2 ``FilePathDataset`` (meldataset.py): each item loads the
audio (mono, resampled to 24 kHz), pads 5000 samples of silence on each side, computes the log-mel
with :func:`tts_zoo.audio.log_mel` (cut to an even number of frames: one text-aligned frame is two mel
frames), encodes the phonemes as ``[0] + ids + [0]``, draws a reference clip from the same speaker
(a random crop of ``ref_frames`` mel frames) and a random out-of-distribution text of at least
``min_ood_length`` phoneme characters (from ``ood_texts``, or else the other manifest texts).

The random draws of an item (reference clip, OOD text, a stand-in for a skipped item) come from a
generator seeded by (``seed``, epoch, item index): the same whichever loader worker reads it and in
whatever order, so a resumed run reads exactly the items an uninterrupted one would have
(:meth:`SpeechDataset.set_epoch`; the training loop calls it before each epoch).

Missing, unreadable, empty or too-short audio never crashes an epoch: the item is skipped (counted in
:attr:`SpeechDataset.skipped`, one warning each) and another one is drawn in its place.

With ``f0_labels`` (:class:`tts_zoo.data.f0_labels.F0Labels`, computed before training) each sample
also carries its cached F0 label, cut like the mel; a missing label is all NaN (counted in
:attr:`SpeechDataset.f0_missing`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import torch
from torch import Tensor

from tts_zoo.audio import AudioError, load_audio, log_mel
from tts_zoo.pitch import frame_count
from tts_zoo.data.manifest import Utterance, read_list, read_manifest, read_speakers, speaker_ids
from tts_zoo.interfaces import TextFrontend

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)

__all__ = ["Sample", "SpeechDataset", "read_ood_texts"]

HOP_LENGTH = 300


class Sample(NamedTuple):
    """One item, in the reference's order (its ``__getitem__`` returns the first eight)."""

    speaker: int
    mel: Tensor  # [80, F], F even
    tokens: Tensor  # [T] long: [0] + ids + [0]
    ood_tokens: Tensor  # [T'] long, same framing
    ref_mel: Tensor  # [80, <= ref_frames]
    ref_speaker: int
    path: str
    wave: Tensor  # [S + 2 * pad_samples] float32, the padded 24 kHz wave the mel was computed from
    f0: Optional[Tensor] = None  # [F] float32 Hz (0 = unvoiced, NaN = label missing); None without f0_labels


class _Unusable(Exception):
    pass


def read_ood_texts(path: PathLike) -> list[str]:
    """An OOD text file: one phoneme string a line, or the reference's ``path|phonemes|…`` lines."""
    lines = [line.rstrip("\n") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and ".wav" in lines[0].split("|")[0]:  # the reference's test: a list with audio paths
        return [line.split("|")[1] for line in lines]
    return [line.split("|")[0] for line in lines]


def _duration(record: Utterance) -> float:
    if record.duration > 0:
        return record.duration
    import soundfile

    try:
        info = soundfile.info(record.audio)
        return info.frames / info.samplerate
    except Exception:  # unreadable: skipped when loaded
        return 0.0


class SpeechDataset(torch.utils.data.Dataset):
    """Manifest records → :class:`Sample` (see the module docstring).

    Args:
        records: the utterances (``read_manifest``); ``phonemes`` are encoded by ``frontend``.
        frontend: its ``encode`` maps phonemes to ids (out-of-table symbols are dropped).
        speakers: speaker name → id (default: sorted names, as ``speakers.json``).
        ood_texts: phoneme strings for the OOD text (default: the records' phonemes).
        sample_rate: the rate audio is resampled to.
        pad_samples: silence added on each side before the mel (reference: 5000).
        ref_frames: length of the reference-clip crop in mel frames (reference: 192).
        min_ood_length: minimum OOD text length in characters (reference: 50).
        min_duration: shorter audio (seconds, before padding) is skipped.
        seed: with the epoch and the item's index, seeds the item's reference and OOD draws.
        f0_labels: cached F0 labels to attach (None: ``Sample.f0`` is None).
        cache_audio: keep each clip's padded wave and log-mel in memory after its first read, so later
            epochs (and later stages) neither decode nor transform it again. For corpora that fit in
            memory (~0.5 MB per 3.6 s clip); with DataLoader workers each keeps its own copy.
    """

    def __init__(
        self,
        records: Sequence[Utterance],
        frontend: TextFrontend,
        *,
        speakers: Optional[dict[str, int]] = None,
        ood_texts: Optional[Sequence[str]] = None,
        sample_rate: int = 24000,
        pad_samples: int = 5000,
        ref_frames: int = 192,
        min_ood_length: int = 50,
        min_duration: float = 0.1,
        seed: int = 0,
        f0_labels: Optional[Any] = None,
        cache_audio: bool = False,
    ):
        if not records:
            raise ValueError("SpeechDataset: no records")
        self.records = list(records)
        self.frontend = frontend
        self.speakers = dict(speakers) if speakers is not None else speaker_ids(self.records)
        self.sample_rate = sample_rate
        self.pad_samples = pad_samples
        self.ref_frames = ref_frames
        self.min_samples = max(1, int(min_duration * sample_rate))
        self.seed = seed
        self.f0_labels = f0_labels
        self.f0_missing: set[str] = set()  # audio paths whose F0 label is missing
        texts = [t for t in (ood_texts if ood_texts is not None else [r.phonemes for r in self.records]) if t.strip()]
        long_enough = [t for t in texts if len(t) >= min_ood_length]
        # The reference redraws until one is long enough; with none that long, any will do.
        self.ood_texts = long_enough or texts or [r.phonemes for r in self.records]
        self.by_speaker: dict[str, list[int]] = {}
        for i, r in enumerate(self.records):
            self.by_speaker.setdefault(r.speaker, []).append(i)
        self.skipped: dict[str, str] = {}  # path → reason
        self._bad: set[int] = set()
        self.epoch = 0
        self._lengths: Optional[list[int]] = None
        self._audio_cache: Optional[dict[int, tuple[Tensor, Tensor]]] = {} if cache_audio else None

    @classmethod
    def from_manifest(cls, path: PathLike, frontend: TextFrontend, **kwargs) -> "SpeechDataset":
        """From a JSONL manifest; ``speakers.json`` beside it gives the speaker ids when present."""
        path = Path(path)
        if "speakers" not in kwargs and (path.parent / "speakers.json").is_file():
            kwargs["speakers"] = read_speakers(path.parent / "speakers.json")
        return cls(read_manifest(path), frontend, **kwargs)

    @classmethod
    def from_list(cls, path: PathLike, frontend: TextFrontend, root: Optional[PathLike] = None,
                  ood_file: Optional[PathLike] = None, **kwargs) -> "SpeechDataset":
        """From a reference ``path|phonemes|speaker`` list (+ its ``OOD_texts.txt``)."""
        if ood_file is not None:
            kwargs["ood_texts"] = read_ood_texts(ood_file)
        records = read_list(path, root)
        if all(r.speaker.isdigit() for r in records):  # the reference's ids are the list's numbers
            kwargs.setdefault("speakers", {r.speaker: int(r.speaker) for r in records})
        return cls(records, frontend, **kwargs)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def lengths(self) -> list[int]:
        """Approximate mel frames per item, for length bucketing: from the manifest durations (or,
        where unknown, as in the reference lists, from the audio file's header; 0 if unreadable)."""
        if self._lengths is None:
            pad = 2 * self.pad_samples
            self._lengths = [1 + (math.ceil(_duration(r) * self.sample_rate) + pad) // HOP_LENGTH for r in self.records]
        return self._lengths

    # ----------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next items are read for (their random draws depend on it)."""
        self.epoch = epoch

    def _skip(self, idx: int, reason: str) -> None:
        self._bad.add(idx)
        path = self.records[idx].audio
        self.skipped[path] = reason
        logger.warning("skipping %s: %s (%d skipped so far)", path, reason, len(self.skipped))

    def _load(self, idx: int) -> Tensor:
        """The padded 24 kHz wave of record ``idx``, or :class:`_Unusable`."""
        record = self.records[idx]
        try:
            wave = load_audio(record.audio, self.sample_rate)
        except AudioError as e:
            raise _Unusable(str(e)) from e
        if wave.shape[-1] < self.min_samples:
            raise _Unusable(f"too short ({wave.shape[-1]} samples < {self.min_samples})")
        if not torch.isfinite(wave).all():
            raise _Unusable("non-finite samples")
        return torch.nn.functional.pad(wave, (self.pad_samples, self.pad_samples))

    def _wave_and_mel(self, idx: int) -> tuple[Tensor, Tensor]:
        """(padded wave [S], log-mel [80, F]) of record ``idx``, from the cache when ``cache_audio``.
        The cached tensors are shared: callers slice them and never write into them."""
        if self._audio_cache is not None and idx in self._audio_cache:
            return self._audio_cache[idx]
        wave = self._load(idx)
        pair = (wave, log_mel(wave))
        if self._audio_cache is not None:
            self._audio_cache[idx] = pair
        return pair

    def _tokens(self, phonemes: str) -> Tensor:
        return torch.tensor([0, *self.frontend.encode(phonemes), 0], dtype=torch.long)

    def _reference(self, idx: int, rng: random.Random) -> tuple[Tensor, int]:
        """A random crop of ``ref_frames`` mel frames of a random clip of the same speaker."""
        record = self.records[idx]
        candidates = [i for i in self.by_speaker[record.speaker] if i not in self._bad]
        while candidates:
            j = rng.choice(candidates)
            try:
                _, mel = self._wave_and_mel(j)
            except _Unusable as e:
                self._skip(j, str(e))
                candidates.remove(j)
                continue
            if mel.shape[-1] > self.ref_frames:
                start = rng.randrange(0, mel.shape[-1] - self.ref_frames)  # as np.random.randint(0, n - max)
                mel = mel[:, start : start + self.ref_frames]
            return mel, self.speakers[self.records[j].speaker]
        raise _Unusable(f"no usable reference clip for speaker {record.speaker!r}")

    def __getitem__(self, idx: int) -> Sample:
        rng = random.Random(f"{self.seed}:{self.epoch}:{idx}")  # a str seed is hashed with SHA-512: stable
        for _ in range(100):
            if idx not in self._bad:
                try:
                    return self._item(idx, rng)
                except _Unusable as e:
                    self._skip(idx, str(e))
            if len(self._bad) >= len(self.records):
                break
            idx = rng.randrange(len(self.records))  # a stand-in for the skipped item
        raise RuntimeError(f"SpeechDataset: no usable audio left ({len(self.skipped)} files skipped)")

    def _item(self, idx: int, rng: random.Random) -> Sample:
        record = self.records[idx]
        wave, mel = self._wave_and_mel(idx)
        mel = mel[:, : mel.shape[-1] - mel.shape[-1] % 2]
        ref_mel, ref_speaker = self._reference(idx, rng)
        ood = self._tokens(rng.choice(self.ood_texts))
        return Sample(self.speakers[record.speaker], mel, self._tokens(record.phonemes), ood, ref_mel, ref_speaker,
                      record.audio, wave, self._f0(record.audio, wave.shape[-1], mel.shape[-1]))

    def _f0(self, audio: str, n_samples: int, n_frames: int) -> Optional[Tensor]:
        """The cached label cut to the mel's ``n_frames``; all NaN when missing or not of this wave."""
        if self.f0_labels is None:
            return None
        f0 = self.f0_labels.load(audio)
        if f0 is None or len(f0) != frame_count(n_samples, HOP_LENGTH):
            self.f0_missing.add(audio)
            return torch.full((n_frames,), float("nan"))
        return torch.from_numpy(f0[:n_frames]).float()
