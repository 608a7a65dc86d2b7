"""Corpus preparation: corpus records → phonemized train/val manifests and a report.

``prepare_corpus("ljspeech", "LJSpeech-1.1", "data/lj", frontend)`` reads the tree
(:mod:`tts_zoo.data.corpora`, or synthesizes the :mod:`tts_zoo.data.demo` corpus), probes every audio
file's header (duration, sample rate), phonemizes every distinct transcript with the given
:class:`~tts_zoo.interfaces.TextFrontend`, splits train/val and writes, atomically, into ``out_dir``:

* ``train.jsonl`` / ``val.jsonl`` — :mod:`tts_zoo.data.manifest` records;
* ``train_list.txt`` / ``val_list.txt`` — the reference's ``path|phonemes|speaker_id`` lists;
* ``speakers.json`` (name → id), ``meta.json`` (corpus, frontend ``describe()``, settings) and
  ``report.json`` (:class:`PrepareReport`).

Re-running does only new work: audio headers are cached by (path, size, mtime) and phonemes by
(frontend class + ``describe()``, text) under ``out_dir/.cache``. Probing runs in threads (I/O),
phonemizing in forked processes (CPU), each with a rich progress bar. Bad inputs are skipped and
listed in the report (missing or unreadable audio, empty transcripts); only an empty result is fatal.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from tts_zoo.data.corpora import CorpusItem, read_corpus
from tts_zoo.data.manifest import Utterance, atomic_write_text, speaker_ids, write_list, write_manifest
from tts_zoo.errors import TTSZooError
from tts_zoo.interfaces import TextFrontend

PathLike = Union[str, Path]

__all__ = ["DURATION_BINS", "PrepareError", "PrepareReport", "prepare_corpus", "prepare_items", "split_train_val"]

DURATION_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0, 20.0, 30.0, math.inf)
"""Edges (seconds) of the report's duration histogram."""

_SHOWN = 10  # entries of each skipped-file list printed (report.json has them all)


class PrepareError(TTSZooError):
    """Nothing usable is left after skipping bad inputs (the report says why)."""


@dataclass
class PrepareReport:
    """What ``prepare`` did: counts, hours, skipped inputs and how much work the caches saved."""

    corpus: str
    out_dir: str
    frontend: dict[str, Any]
    train: int = 0
    val: int = 0
    speakers: dict[str, int] = field(default_factory=dict)  # utterances per speaker
    hours: float = 0.0
    histogram: dict[str, int] = field(default_factory=dict)  # "lo-hi s" → count
    sample_rate: int = 24000
    resampled: dict[str, int] = field(default_factory=dict)  # source rate → files (resampled when loaded)
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: reason"
    empty_texts: list[str] = field(default_factory=list)  # utterance ids
    duplicates: list[str] = field(default_factory=list)
    oov_symbols: dict[str, int] = field(default_factory=dict)
    probed: int = 0
    probed_cached: int = 0
    phonemized: int = 0
    phonemized_cached: int = 0
    seconds: float = 0.0

    @property
    def utterances(self) -> int:
        return self.train + self.val

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "utterances": self.utterances}

    def render(self, console: Any = None) -> None:
        """Print the report (rich)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(highlight=False)
        settings = [f"{k} {self.frontend[k]}" for k in ("language", "espeak_ng") if k in self.frontend]
        name = " ".join([str(self.frontend.get("name", "?")), *settings])
        console.print(f"[bold]Prepared {self.corpus}[/] → {self.out_dir}  (frontend {name})")
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style="bold")
        t.add_column()
        t.add_row("utterances", f"{self.utterances} (train {self.train}, val {self.val})")
        t.add_row("speakers", str(len(self.speakers)))
        t.add_row("total", f"{self.hours:.2f} h")
        peak = max(self.histogram.values(), default=0) or 1
        for label, count in self.histogram.items():
            t.add_row(f"  {label}", f"{'█' * round(24 * count / peak):<24} {count}")
        rates = ", ".join(f"{n} at {sr} Hz" for sr, n in self.resampled.items())
        t.add_row("resampled", f"{rates} → {self.sample_rate} Hz when loaded" if rates else "none")
        for label, items in (("missing", self.missing), ("unreadable", self.unreadable),
                             ("empty texts", self.empty_texts), ("duplicate ids", self.duplicates)):
            shown = "; ".join(items[:_SHOWN]) + (f"; … {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")
            t.add_row(label, f"{len(items)} skipped: {shown}" if items else "0")
        oov = ", ".join(f"{s!r}×{n}" for s, n in self.oov_symbols.items())
        t.add_row("OOV symbols", oov or "none")
        t.add_row("work", f"probed {self.probed} new ({self.probed_cached} cached), phonemized "
                          f"{self.phonemized} new ({self.phonemized_cached} cached) in {self.seconds:.1f} s")
        console.print(t)


# --------------------------------------------------------------------------------------------
# Caches (JSON files under out_dir/.cache, rewritten atomically at the end of a run)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: start over


def frontend_key(frontend: TextFrontend) -> tuple[dict[str, Any], str]:
    """The frontend's identity (class + ``describe()``) and a short hash of it (the cache key)."""
    cls = type(frontend)
    ident = {"name": getattr(frontend, "name", cls.__name__), "class": f"{cls.__module__}:{cls.__qualname__}",
             **frontend.describe()}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ident, digest


# --------------------------------------------------------------------------------------------
# Audio headers


def _probe(path: Path) -> dict[str, Any]:
    """Header facts of one file: size/mtime (the cache key), frames, rate, or an error."""
    import soundfile

    st = path.stat()
    info: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        i = soundfile.info(str(path))
        info.update(frames=int(i.frames), sample_rate=int(i.samplerate))
        if i.frames <= 0:
            info["error"] = "empty audio (0 samples)"
    except Exception as e:  # LibsndfileError / RuntimeError, depending on the soundfile version
        info["error"] = " ".join(str(e).split()) or type(e).__name__
    return info


def _probe_all(paths: Sequence[Path], cache: dict[str, Any], workers: int, progress: Any) -> tuple[dict[str, Any], int]:
    """Probe files not in ``cache`` (or changed since); returns {path: info | None (missing)}, #probed."""
    result: dict[str, Any] = {}
    todo = []
    for p in paths:
        key = str(p)
        try:
            st = p.stat()
        except OSError:
            result[key] = None
            continue
        hit = cache.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            result[key] = hit
        else:
            todo.append(p)
    task = progress.add_task("probing audio", total=len(todo))
    with ThreadPoolExecutor(max_workers=max(1, 2 * workers)) as pool:  # I/O bound: threads suffice
        for p, info in zip(todo, pool.map(_probe, todo)):
            result[str(p)] = cache[str(p)] = info
            progress.advance(task)
    return result, len(todo)


# --------------------------------------------------------------------------------------------
# Phonemization (forked worker processes inherit the frontend: nothing is pickled)

_WORKER_FRONTEND: Optional[TextFrontend] = None


def _init_worker(frontend: TextFrontend) -> None:
    global _WORKER_FRONTEND
    _WORKER_FRONTEND = frontend


def _phonemize_chunk(texts: list[str], frontend: Optional[TextFrontend] = None) -> list[str]:
    fe = frontend or _WORKER_FRONTEND
    assert fe is not None
    batch = getattr(fe, "phonemize_batch", None)
    out = batch(texts) if callable(batch) else [fe.phonemize(t) for t in texts]
    return [" ".join(p.split()) for p in out]


def _phonemize_all(frontend: TextFrontend, texts: Sequence[str], workers: int, progress: Any) -> dict[str, str]:
    task = progress.add_task("phonemizing", total=len(texts))
    chunk = max(32, math.ceil(len(texts) / (8 * workers)))
    chunks = [list(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    result: dict[str, str] = {}
    use_pool = workers > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if not use_pool:
        for c in chunks:
            result.update(zip(c, _phonemize_chunk(c, frontend)))
            progress.advance(task, len(c))
        return result
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx,
                             initializer=_init_worker, initargs=(frontend,)) as pool:
        for c, phonemes in zip(chunks, pool.map(_phonemize_chunk, chunks)):
            result.update(zip(c, phonemes))
            progress.advance(task, len(c))
    return result


# --------------------------------------------------------------------------------------------
# Split and histogram


def split_train_val(records: Sequence[Utterance], val_fraction: float, seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic split by a hash of (seed, id): stable when the corpus grows.

    At least one validation utterance when ``val_fraction > 0`` and there are two or more.
    """
    def u(r: Utterance) -> float:
        return int(hashlib.sha256(f"{seed}:{r.id}".encode()).hexdigest()[:12], 16) / 16**12

    scores = {r.id: u(r) for r in records}
    val_ids = {i for i, s in scores.items() if s < val_fraction}
    if val_fraction > 0 and not val_ids and len(records) >= 2:
        val_ids = {min(scores, key=scores.get)}  # type: ignore[arg-type]
    if len(val_ids) == len(records) and records:  # keep something to train on
        val_ids.discard(max(val_ids, key=scores.get))  # type: ignore[arg-type]
    return [r for r in records if r.id not in val_ids], [r for r in records if r.id in val_ids]


def duration_histogram(durations: Iterable[float]) -> dict[str, int]:
    counts = Counter()
    for d in durations:
        for lo, hi in zip(DURATION_BINS, DURATION_BINS[1:]):
            if lo <= d < hi:
                counts[(lo, hi)] += 1
                break
    return {(f"{lo:g}-{hi:g} s" if hi != math.inf else f"≥{lo:g} s"): counts[(lo, hi)]
            for lo, hi in zip(DURATION_BINS, DURATION_BINS[1:])}


# --------------------------------------------------------------------------------------------
# The pipeline


class _NoProgress:
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass


def _progress_bar(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prepare_items(
    items: Sequence[CorpusItem],
    out_dir: PathLike,
    frontend: TextFrontend,
    *,
    corpus: str = "csv",
    source: Optional[PathLike] = None,
    workers: Optional[int] = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    sample_rate: int = 24000,
    progress: Any = None,
) -> PrepareReport:
    """Probe, phonemize, split and write manifests for corpus ``items`` (see the module docstring).

    ``progress`` is a rich ``Progress`` (or None for none). Raises :class:`PrepareError` when nothing
    usable is left (after writing ``report.json``).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    cache_dir = out / ".cache"
    workers = workers or default_workers()
    progress = progress or _NoProgress()
    ident, fkey = frontend_key(frontend)
    report = PrepareReport(corpus=corpus, out_dir=str(out), frontend=ident, sample_rate=sample_rate)

    # Unique ids; empty transcripts are skipped before any work is spent on them.
    seen: set[str] = set()
    kept: list[CorpusItem] = []
    for it in items:
        if it.id in seen:
            report.duplicates.append(it.id)
        elif not it.text.strip():
            seen.add(it.id)
            report.empty_texts.append(it.id)
        else:
            seen.add(it.id)
            kept.append(it)

    audio_cache = _load_json(cache_dir / "audio.json")
    paths = [Path(os.path.abspath(it.audio)) for it in kept]
    infos, report.probed = _probe_all(paths, audio_cache, workers, progress)
    report.probed_cached = len(paths) - report.probed - sum(v is None for v in infos.values())
    usable: list[tuple[CorpusItem, Path, dict[str, Any]]] = []
    for it, p in zip(kept, paths):
        info = infos[str(p)]
        if info is None:
            report.missing.append(str(it.audio))
        elif info.get("error"):
            report.unreadable.append(f"{it.audio}: {info['error']}")
        else:
            usable.append((it, p, info))

    phoneme_cache: dict[str, str] = _load_json(cache_dir / f"phonemes-{fkey}.json")
    texts = sorted({it.text.strip() for it, _, _ in usable})
    new = [t for t in texts if t not in phoneme_cache]
    phoneme_cache.update(_phonemize_all(frontend, new, workers, progress))
    report.phonemized, report.phonemized_cached = len(new), len(texts) - len(new)

    table = set(frontend.symbols)
    oov: Counter[str] = Counter()
    records = []
    for it, p, info in usable:
        phonemes = phoneme_cache[it.text.strip()]
        if not phonemes.strip():
            report.empty_texts.append(it.id)
            continue
        oov.update(ch for ch in phonemes if ch not in table)
        sr = int(info["sample_rate"])
        records.append(Utterance(it.id, str(p), it.text.strip(), phonemes, it.speaker, round(info["frames"] / sr, 4), sr))

    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache_dir / "audio.json", json.dumps(audio_cache))
    atomic_write_text(cache_dir / f"phonemes-{fkey}.json", json.dumps(phoneme_cache, ensure_ascii=False))

    report.oov_symbols = dict(oov.most_common())
    report.resampled = {str(sr): n for sr, n in sorted(Counter(r.sample_rate for r in records).items()) if sr != sample_rate}
    report.speakers = dict(sorted(Counter(r.speaker for r in records).items()))
    report.hours = sum(r.duration for r in records) / 3600
    report.histogram = duration_histogram(r.duration for r in records)
    if not records:
        report.seconds = time.perf_counter() - start
        atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        raise PrepareError(
            f"{corpus}: no usable utterances in {source or out} ({len(report.missing)} missing, "
            f"{len(report.unreadable)} unreadable, {len(report.empty_texts)} empty texts); see {out / 'report.json'}"
        )

    train, val = split_train_val(records, val_fraction, seed)
    report.train, report.val = len(train), len(val)
    speakers = speaker_ids(records)
    write_manifest(out / "train.jsonl", train)
    write_manifest(out / "val.jsonl", val)
    write_list(out / "train_list.txt", train, speakers)
    write_list(out / "val_list.txt", val, speakers)
    atomic_write_text(out / "speakers.json", json.dumps(speakers, indent=2, ensure_ascii=False))
    from tts_zoo import __version__

    meta = {"corpus": corpus, "source": str(source) if source is not None else None, "frontend": ident,
            "sample_rate": sample_rate, "val_fraction": val_fraction, "seed": seed, "tts_zoo": __version__}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))
    report.seconds = time.perf_counter() - start
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return report


def prepare_corpus(
    corpus: str,
    source: Optional[PathLike],
    out_dir: PathLike,
    frontend: TextFrontend,
    *,
    workers: Optional[int] = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    sample_rate: int = 24000,
    show_progress: bool = False,
    demo_options: Optional[dict[str, Any]] = None,
) -> PrepareReport:
    """Read (or, for ``demo``, synthesize) a corpus and prepare it: see :func:`prepare_items`.

    ``corpus`` is ``ljspeech``, ``libritts``, ``vctk``, ``csv`` or ``demo`` (``source`` unused;
    ``demo_options`` go to :func:`tts_zoo.data.demo.build_demo`).
    """
    workers = workers or default_workers()
    items: Sequence[CorpusItem] = []
    if corpus != "demo":  # layout errors surface before any progress display
        if source is None:
            raise PrepareError(f"prepare {corpus}: a SOURCE folder is required")
        items = read_corpus(corpus, source)
    with _progress_bar(show_progress) as progress:
        if corpus == "demo":
            from tts_zoo.data.demo import build_demo

            items = build_demo(out_dir, seed=seed, workers=workers, progress=progress, **(demo_options or {}))
        return prepare_items(items, out_dir, frontend, corpus=corpus, source=source, workers=workers,
                             val_fraction=val_fraction, seed=seed, sample_rate=sample_rate, progress=progress)
