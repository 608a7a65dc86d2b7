"""F0 labels: computed once per audio file by a wave pitch tracker and cached beside the manifest.

The tracker is a ``pitch_extractor`` component whose ``input_kind`` is ``"wave"`` (the recipe's
``data.f0_labels`` block, e.g. ``{component: dsp_pitch, method: dio}``). Labels are computed on
the wave exactly as :class:`tts_zoo.data.dataset.SpeechDataset` builds it (loaded at ``sample_rate``,
``pad_samples`` of silence each side), so label ``i`` belongs to mel frame ``i`` of the dataset's mel.

Layout, under ``<manifest dir>/f0/<tracker>-<settings hash>/``:

* ``settings.json`` — the tracker's ``describe()`` plus rate and padding (what the hash covers);
* ``<key>.npy`` — float32 ``[1 + S_padded // 300]`` Hz, 0 = unvoiced;
* ``<key>.missing`` — the reason the tracker failed on that file: the label is *missing* (the dataset
  gives NaN, the stage skips it) and is not retried until the file changes.

``<key>`` hashes the audio file's resolved path, size and mtime, so an edited file is labelled again.
Every write is atomic (temporary file + rename); re-running :meth:`F0Labels.ensure` only stats files.
Computing runs before training (``tts-zoo prepare --f0`` or the first run of a recipe with
``data.f0_labels``), in up to two forked processes with a progress bar — never in a training step.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from tts_zoo.data.manifest import atomic_write_bytes
from tts_zoo.errors import TTSZooError

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)

__all__ = ["F0LabelReport", "F0Labels", "build_tracker"]

_FORMAT = 1  # bump when the way labels are made changes


def build_tracker(block: Mapping[str, Any]) -> Any:
    """A ``data.f0_labels`` component block → the wave pitch tracker (raises if it takes mels)."""
    from tts_zoo import registry

    tracker = registry.build_component(dict(block), kind="pitch_extractor")
    if getattr(tracker, "input_kind", "mel") != "wave":
        raise TTSZooError(f"data.f0_labels: component {block.get('component')!r} takes mels, not waves; "
                          "name a wave tracker such as {component: dsp_pitch, method: dio}")
    return tracker


@dataclass
class F0LabelReport:
    """What :meth:`F0Labels.ensure` did."""

    total: int = 0
    computed: int = 0
    cached: int = 0
    missing: dict[str, str] = field(default_factory=dict)  # audio path → why the tracker failed
    seconds: float = 0.0


_WORKER: Optional["F0Labels"] = None  # the labels object a forked worker inherited


def _work(audio: str) -> tuple[str, Optional[str]]:
    assert _WORKER is not None
    return audio, _WORKER.compute(audio)


class F0Labels:
    """Cached F0 labels of audio files (see the module docstring).

    Args:
        root: the cache folder (``<manifest dir>/f0``).
        tracker: a pitch extractor with ``input_kind == "wave"`` and ``describe()``.
        sample_rate: rate the audio is loaded at (the dataset's).
        pad_samples: silence added on each side before tracking (the dataset's).
    """

    def __init__(self, root: PathLike, tracker: Any, *, sample_rate: int = 24000, pad_samples: int = 5000):
        self.tracker = tracker
        self.sample_rate, self.pad_samples = sample_rate, pad_samples
        self.settings = {**tracker.describe(), "sample_rate": sample_rate, "pad_samples": pad_samples,
                         "format": _FORMAT}
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = Path(root) / f"{self.settings.get('tracker', 'f0')}-{digest}"
        self.report: Optional[F0LabelReport] = None  # of the last ensure() by for_manifest

    @classmethod
    def for_manifest(cls, manifest: PathLike, block: Mapping[str, Any], *, sample_rate: int = 24000,
                     pad_samples: int = 5000, workers: int = 2, progress: bool = True) -> "F0Labels":
        """The labels of a manifest's audio under ``<manifest dir>/f0``, computed now where missing."""
        from tts_zoo.data.manifest import read_manifest

        labels = cls(Path(manifest).parent / "f0", build_tracker(block), sample_rate=sample_rate,
                     pad_samples=pad_samples)
        labels.report = labels.ensure([r.audio for r in read_manifest(manifest)], workers=workers, progress=progress)
        return labels

    # ---------------------------------------------------------------- one file

    def _key(self, audio: str) -> Optional[str]:
        try:
            path = Path(audio).resolve()
            st = path.stat()
        except OSError:
            return None
        return hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]

    def status(self, audio: str) -> str:
        """``"ok"`` (label cached), ``"missing"`` (the tracker failed, or the file is gone) or ``"todo"``."""
        key = self._key(audio)
        if key is None or (self.dir / f"{key}.missing").exists():
            return "missing"
        return "ok" if (self.dir / f"{key}.npy").exists() else "todo"

    def load(self, audio: str) -> Optional[np.ndarray]:
        """The cached label float32 [F] of ``audio``, or None (missing, or never computed)."""
        key = self._key(audio)
        if key is None:
            return None
        try:
            return np.load(self.dir / f"{key}.npy")
        except (OSError, ValueError):
            return None

    def compute(self, audio: str) -> Optional[str]:
        """Track ``audio`` and store its label; returns None, or why it is missing (also stored)."""
        import torch

        from tts_zoo.audio import AudioError, load_audio
        from tts_zoo.pitch import PitchTrackingError

        key = self._key(audio)
        if key is None:
            return "audio file not found"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            wave = torch.nn.functional.pad(load_audio(audio, self.sample_rate), (self.pad_samples, self.pad_samples))
            f0 = self.tracker(wave[None])[0][0].float().cpu().numpy()  # the wave form of the interface
        except (AudioError, PitchTrackingError) as e:
            reason = str(e)
            atomic_write_bytes(self.dir / f"{key}.missing", reason.encode())
            return reason
        buf = io.BytesIO()
        np.save(buf, f0)
        atomic_write_bytes(self.dir / f"{key}.npy", buf.getvalue())
        return None

    # ---------------------------------------------------------------- many files

    def ensure(self, audios: Iterable[str], *, workers: int = 2, progress: bool = True) -> F0LabelReport:
        """Compute the labels not cached yet (in up to ``workers`` forked processes) and report.

        Files the tracker fails on are marked missing, counted and named in one warning."""
        start = time.perf_counter()
        audios = list(dict.fromkeys(audios))
        report = F0LabelReport(total=len(audios))
        todo = []
        for a in audios:
            state = self.status(a)
            if state == "todo":
                todo.append(a)
            elif state == "missing":
                report.missing[a] = self._reason(a)
        report.cached = len(audios) - len(todo) - len(report.missing)
        if todo:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.dir / "settings.json", json.dumps(self.settings, indent=1).encode())
            for audio, reason in self._run(todo, workers, progress):
                if reason is None:
                    report.computed += 1
                else:
                    report.missing[audio] = reason
        report.seconds = time.perf_counter() - start
        if report.missing:
            shown = "; ".join(f"{a}: {r}" for a, r in list(report.missing.items())[:3])
            logger.warning("F0 labels: %d of %d files missing (the tracker failed; those items train without F0 "
                           "labels): %s%s", len(report.missing), report.total, shown,
                           " …" if len(report.missing) > 3 else "")
        return report

    def _reason(self, audio: str) -> str:
        key = self._key(audio)
        if key is None:
            return "audio file not found"
        try:
            return (self.dir / f"{key}.missing").read_text(encoding="utf-8")
        except OSError:
            return "?"

    def _run(self, todo: list[str], workers: int, progress: bool) -> Iterable[tuple[str, Optional[str]]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("F0 labels ({task.fields[tracker]})"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("ETA"), TimeRemainingColumn(), disable=not progress)
        with bar:
            task = bar.add_task("f0", total=len(todo), tracker=self.settings.get("tracker", "?"))
            if workers <= 1 or len(todo) < 4 or "fork" not in multiprocessing.get_all_start_methods():
                for audio in todo:
                    yield audio, self.compute(audio)
                    bar.advance(task)
                return
            global _WORKER
            _WORKER = self  # forked workers inherit it: nothing is pickled
            try:
                ctx = multiprocessing.get_context("fork")
                with ctx.Pool(min(workers, len(todo)), initializer=_single_thread) as pool:
                    for result in pool.imap_unordered(_work, todo, chunksize=1):
                        yield result
                        bar.advance(task)
            finally:
                _WORKER = None


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)
