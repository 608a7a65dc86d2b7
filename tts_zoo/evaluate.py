"""Evaluation of any tts-zoo model on held-out sentences, against espeak-ng and with a real ASR.

For each sentence the model speaks it (through :class:`tts_zoo.Synthesizer`), espeak-ng speaks it too
(:class:`tts_zoo.data.demo.Espeak`, one voice: a demo speaker or any espeak-ng voice), and we measure:

* **WER** — Whisper-base (:class:`tts_zoo.asr.WhisperTranscriber`) transcribes the model's audio;
  edits / reference words after normalisation (:func:`tts_zoo.asr.word_errors`). The corpus WER sums
  edits and words over the sentences.
* **espeak-ng WER** — the same on espeak-ng's audio: the ceiling (espeak-ng is the demo's teacher).
* **MCD-DTW** (dB) and **log-F0 RMSE** (cents) of the model's audio against espeak-ng's recording of
  the same sentence (:mod:`tts_zoo.metrics`; F0 from :func:`tts_zoo.pitch.estimate_f0`, WORLD DIO).
* **duration ratio** — model seconds / espeak-ng seconds, both with leading and trailing silence
  trimmed (:func:`tts_zoo.audio.trim_silence`, 30 dB).

The model's voice: ``reference`` (a recording or stored voice) or else espeak-ng's voice reading
:data:`VOICE_PROMPT` (a sentence outside the evaluation set). All audio is compared at 24 kHz.

:func:`evaluate` keeps no global state; pass an already-loaded ``transcriber`` and a
:class:`References` made once to evaluate many checkpoints cheaply (espeak-ng's audio, features and
transcripts are computed once and kept in it). ``tts-zoo evaluate`` (:func:`evaluate_command`) is a
thin layer over it. This module imports no torch at import time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import typer

from tts_zoo.errors import TTSZooError

__all__ = ["EvalError", "EvalReport", "Recording", "References", "SentenceResult", "eval_sentences", "evaluate",
           "evaluate_command"]

SENTENCES_FILE = Path(__file__).parent / "data" / "eval_sentences.txt"
DEFAULT_LIMIT = 20  # sentences of the built-in file used by default
VOICE_PROMPT = "This is how my voice sounds when I read a few simple words out loud."
TRIM_DB = 30.0
SILENT = 1e-4  # peak below -80 dBFS: no audio at all (seconds 0, no metrics, no transcript)
F0_METHOD = "dio"  # tts_zoo.pitch tracker (see _f0)


class EvalError(TTSZooError, ValueError):
    """Bad evaluation input (sentences, voice, model, output folder): one line with the fix."""


def eval_sentences(path: Union[str, Path, None] = None, limit: Optional[int] = None) -> list[str]:
    """Sentences from a UTF-8 file (one a line; blank and ``#`` lines skipped), the first ``limit``.
    No ``path``: the built-in held-out set, first :data:`DEFAULT_LIMIT` unless ``limit`` says otherwise."""
    source = Path(path) if path is not None else SENTENCES_FILE
    if limit is None and path is None:
        limit = DEFAULT_LIMIT
    if limit is not None and limit < 1:
        raise EvalError(f"--limit {limit}: give at least 1 sentence")
    if not source.is_file():
        raise EvalError(f"{source}: no such sentences file (one sentence per line)")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise EvalError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None
    sentences = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not sentences:
        raise EvalError(f"{source}: no sentences (one sentence per line; '#' lines are comments)")
    return sentences[:limit]


# ---------------------------------------------------------------------- recordings and references


@dataclass
class Recording:
    """A waveform and what the metrics need of it, computed once.

    ``wave``: float32 ``[S]`` at 24 kHz as made; ``seconds``: its length with silence trimmed (0 when
    the whole wave is below :data:`SILENT`);
    ``cepstra`` ``[T, 24]`` / ``f0`` ``[T]`` (Hz, 0 = unvoiced): of the trimmed wave (None when it is
    shorter than a frame, or the tracker failed); ``nonfinite``: NaN/Inf samples, replaced by 0 (a
    diverged model); ``transcript``: Whisper's text once transcribed.
    """

    wave: np.ndarray
    seconds: float
    cepstra: Optional[np.ndarray]
    f0: Optional[np.ndarray]
    nonfinite: int = 0
    transcript: Optional[str] = None

    @classmethod
    def analyse(cls, wave: Any, sample_rate: int) -> "Recording":
        import torch

        from tts_zoo.audio import resample, trim_silence
        from tts_zoo.metrics import SAMPLE_RATE, mel_cepstra

        x = np.asarray(wave, dtype=np.float32).flatten()
        finite = np.isfinite(x)
        x = resample(torch.from_numpy(np.where(finite, x, 0.0).astype(np.float32)), int(sample_rate), SAMPLE_RATE)
        audible = x.numel() > 0 and float(x.abs().max()) >= SILENT  # else trim_silence would keep it all
        trimmed = trim_silence(x, TRIM_DB) if audible else x[:0]
        long_enough = trimmed.numel() > 2048  # a few frames at least (the STFT needs > 1024 samples)
        return cls(x.numpy(), trimmed.numel() / SAMPLE_RATE, mel_cepstra(trimmed) if long_enough else None,
                   _f0(trimmed.numpy()) if long_enough else None, int((~finite).sum()))


def _f0(wave: np.ndarray) -> Optional[np.ndarray]:
    """F0 per frame (Hz, 0 = unvoiced) of 24 kHz audio, hop 300; None when the tracker fails."""
    from tts_zoo.metrics import HOP, SAMPLE_RATE
    from tts_zoo.pitch import PitchTrackingError, TrackerUnavailableError, estimate_f0

    # DIO, not Harvest: measured on 6 sentences of two espeak-ng voices (F0 RMSE between them along the
    # DTW path) it gave fewer gross errors (55-147 cents vs 81-314) at 1/16 of the time; Harvest took
    # ~1 s per second of audio here, 36 s for one 37-s clip of an untrained model.
    try:
        try:
            return estimate_f0(wave, SAMPLE_RATE, hop_length=HOP, method=F0_METHOD)
        except TrackerUnavailableError:  # pyworld missing: librosa's pYIN
            return estimate_f0(wave, SAMPLE_RATE, hop_length=HOP, method="pyin")
    except PitchTrackingError:
        return None


def espeak_speaker(voice: str) -> Any:
    """A demo speaker by name (``us_m``, ...) or any espeak-ng voice (``en-us+f2``) at default settings."""
    from tts_zoo.data.demo import DEFAULT_SPEAKERS, DemoSpeaker

    for speaker in DEFAULT_SPEAKERS:
        if speaker.name == voice:
            return speaker
    if not voice or not all(ch.isalnum() or ch in "-+_" for ch in voice):
        raise EvalError(f"--voice {voice!r}: give a demo speaker ({', '.join(s.name for s in DEFAULT_SPEAKERS)}) "
                        "or an espeak-ng voice such as en-us or en+f2")
    return DemoSpeaker(voice, voice)


@dataclass
class References:
    """espeak-ng's recordings of the sentences (and of :data:`VOICE_PROMPT`) in one voice; make once
    with :meth:`make` and pass to :func:`evaluate` as often as needed (transcripts are kept)."""

    sentences: list[str]
    speaker: Any  # tts_zoo.data.demo.DemoSpeaker
    recordings: list[Recording]
    prompt: np.ndarray  # float32 [S], 24 kHz: the voice prompt
    espeak_version: str = ""

    @classmethod
    def make(cls, sentences: Sequence[str], voice: str = "us_m") -> "References":
        from tts_zoo.data.demo import ESPEAK_SAMPLE_RATE, Espeak

        if not sentences or not all(isinstance(s, str) and s.strip() for s in sentences):
            raise EvalError("no sentences to evaluate (give a non-empty list of non-empty sentences)")
        speaker = espeak_speaker(voice)
        espeak = Espeak()
        try:
            try:
                pcm = [espeak.synthesize(text, speaker) for text in [VOICE_PROMPT, *sentences]]
            except ValueError as e:  # an unknown voice
                raise EvalError(f"--voice {voice}: {e} (try en-us, en+f2 or a demo speaker such as us_m)") from None
            version = espeak.version()
        finally:
            espeak.close()
        recordings = [Recording.analyse(p.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE) for p in pcm]
        return cls(list(sentences), speaker, recordings[1:], recordings[0].wave, version)


# ---------------------------------------------------------------------- the report


@dataclass
class SentenceResult:
    """One sentence's numbers (None where a metric is undefined, e.g. F0 with no voiced frame)."""

    index: int
    text: str
    transcript: str
    espeak_transcript: str
    errors: int  # word edits in the model's transcript
    espeak_errors: int
    words: int  # words of the normalised sentence
    wer: float
    espeak_wer: float
    mcd_db: Optional[float]  # MCD with DTW against espeak-ng's recording
    mcd_no_dtw_db: Optional[float]  # the same, frame i with frame i (shows how much timing differs)
    f0_rmse_cents: Optional[float]
    f0_frames: int  # DTW pairs voiced in both
    seconds: float  # model audio, silence trimmed
    espeak_seconds: float
    duration_ratio: Optional[float]
    nonfinite_samples: int  # NaN/Inf samples in the model's audio (counted as silence)
    synthesis_seconds: float  # wall time to synthesize
    whisper_seconds: float  # wall time to transcribe the model's audio


@dataclass
class EvalReport:
    """Per-sentence rows, the aggregates (:meth:`summary`) and the settings; ``to_dict()`` for JSON."""

    rows: list[SentenceResult]
    settings: dict[str, Any]
    whisper_seconds: list[float] = field(default_factory=list)  # every transcription of this call
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Corpus WERs (edits / words over all sentences), mean MCD, F0 RMSE pooled over every voiced
        pair, median duration ratio, Whisper seconds per transcription, wall time."""
        rows = self.rows
        words = sum(r.words for r in rows) or 1
        pooled = [(r.f0_rmse_cents, r.f0_frames) for r in rows if r.f0_rmse_cents is not None]
        frames = sum(n for _, n in pooled)

        def mean(values: list[Optional[float]]) -> Optional[float]:
            kept = [v for v in values if v is not None]
            return float(np.mean(kept)) if kept else None

        ratios = [r.duration_ratio for r in rows if r.duration_ratio is not None]
        return {
            "sentences": len(rows),
            "wer": sum(r.errors for r in rows) / words,
            "espeak_wer": sum(r.espeak_errors for r in rows) / words,
            "mcd_db": mean([r.mcd_db for r in rows]),
            "mcd_no_dtw_db": mean([r.mcd_no_dtw_db for r in rows]),
            "f0_rmse_cents": float(np.sqrt(sum(v * v * n for v, n in pooled) / frames)) if frames else None,
            "duration_ratio_median": float(np.median(ratios)) if ratios else None,
            "seconds": sum(r.seconds for r in rows),
            "espeak_seconds": sum(r.espeak_seconds for r in rows),
            "synthesis_seconds": sum(r.synthesis_seconds for r in rows),
            "whisper_seconds_per_sentence": mean(list(self.whisper_seconds)),
            "wall_seconds": self.wall_seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "settings": self.settings, "sentences": [asdict(r) for r in self.rows]}

    def table(self) -> Any:
        """A rich table: one row per sentence and a totals row."""
        from rich.markup import escape
        from rich.table import Table

        def num(value: Optional[float], fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("#", "WER", "espeak", "MCD dB", "F0 cents", "dur ×", "transcript"):
            table.add_column(col, overflow="fold", justify="left" if col == "transcript" else "right")
        for r in self.rows:
            table.add_row(str(r.index), f"{r.wer:.2f}", f"{r.espeak_wer:.2f}", num(r.mcd_db, ".2f"),
                          num(r.f0_rmse_cents, ".0f"), num(r.duration_ratio, ".2f"), escape(_short(r.transcript) or "(empty)"))
        s = self.summary()
        table.add_row("all", f"{s['wer']:.3f}", f"{s['espeak_wer']:.3f}", num(s["mcd_db"], ".2f"),
                      num(s["f0_rmse_cents"], ".0f"), num(s["duration_ratio_median"], ".2f") + " (median)", "",
                      style="bold")
        return table


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- evaluation


def _synthesizer(model: Any, device: str) -> Any:
    from tts_zoo.synthesize import Synthesizer

    if isinstance(model, Synthesizer):
        return model
    try:
        return Synthesizer(model if not isinstance(model, os.PathLike) else str(model), device=device)
    except TTSZooError:
        raise
    except Exception as e:
        raise EvalError(f"{model}: cannot load the model ({type(e).__name__}: {' '.join(str(e).split())})") from None


def _voice(synth: Any, reference: Any, prompt: np.ndarray) -> Any:
    """The style to speak with: the given reference, else the espeak-ng voice prompt's (None for a
    model that takes no reference)."""
    if reference is not None:
        return synth.style(reference)
    import torch

    from tts_zoo.audio import resample
    from tts_zoo.metrics import SAMPLE_RATE

    wave = resample(torch.from_numpy(prompt), SAMPLE_RATE, synth.sample_rate).to(synth.device)
    try:
        with torch.inference_mode():
            return synth.model.reference_style(wave)
    except NotImplementedError:
        return None


def _compare(ref: Recording, rec: Recording) -> tuple[Optional[float], Optional[float], Optional[float], int]:
    """(MCD-DTW dB, MCD without DTW dB, F0 RMSE cents, voiced pairs) of ``rec`` against ``ref``."""
    from tts_zoo.metrics import dtw_path, f0_rmse_cents, mel_cepstral_distortion

    if rec.cepstra is None or ref.cepstra is None:
        return None, None, None, 0
    path = dtw_path(ref.cepstra, rec.cepstra)
    f0_rmse, f0_frames = f0_rmse_cents(ref.f0, rec.f0, path) if rec.f0 is not None and ref.f0 is not None else (None, 0)
    return (mel_cepstral_distortion(ref.cepstra, rec.cepstra, path), mel_cepstral_distortion(ref.cepstra, rec.cepstra),
            f0_rmse, f0_frames)


def evaluate(
    model: Any,
    sentences: Optional[Sequence[str]] = None,
    *,
    reference: Any = None,
    espeak_voice: str = "us_m",
    whisper_dir: Union[str, Path, None] = None,
    transcriber: Any = None,
    references: Optional[References] = None,
    out_dir: Union[str, Path, None] = None,
    seed: int = 0,
    beam_size: int = 5,
    device: str = "auto",
    synthesis_options: Optional[dict[str, Any]] = None,
    on_sentence: Optional[Callable[[SentenceResult], None]] = None,
) -> EvalReport:
    """Synthesize ``sentences`` with ``model`` and measure them (see the module docstring).

    Args:
        model: a checkpoint directory, a :class:`~tts_zoo.Synthesizer` or a built ``TTSModel``.
        sentences: the text (default: the built-in held-out set, :func:`eval_sentences`).
        reference: the model's voice: an audio file or stored voice ``.npy`` (default: espeak-ng's).
        espeak_voice: espeak-ng voice of the reference recordings (a demo speaker or an espeak voice).
        whisper_dir: faster-whisper model directory (default: :func:`tts_zoo.asr.whisper_model_dir`).
        transcriber: an already-loaded transcriber (``transcribe(wave, sample_rate) → str``).
        references: espeak-ng recordings made once with :meth:`References.make` (overrides
            ``sentences`` and ``espeak_voice``).
        out_dir: where to write ``eval.json``, ``model/NN.wav``, ``espeak/NN.wav`` and ``voice_prompt.wav``
            (None: nothing written). Written only once everything is computed, each file atomically.
        seed: synthesis seed (the same seed gives the same audio).
        beam_size: Whisper beam width when the transcriber is loaded here.
        device: synthesis device (``auto``, ``cpu``, ``cuda``) when the model is loaded here.
        synthesis_options: options for the synthesizer (``alpha``, ``diffusion_steps``, ...).
        on_sentence: called with each sentence's result as soon as it is measured (progress).

    Threads: ``$OMP_NUM_THREADS`` when set, else min(2, cores), for torch (restored afterwards) and
    CTranslate2.
    """
    import torch

    from tts_zoo.asr import WhisperTranscriber, cpu_threads, whisper_model_dir, word_errors
    from tts_zoo.metrics import SAMPLE_RATE

    start = time.perf_counter()
    threads, previous_threads = cpu_threads(), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and out.exists() and not out.is_dir():
            raise EvalError(f"{out}: exists and is not a folder (give --out a folder)")
        if references is None:
            references = References.make(list(sentences) if sentences is not None else eval_sentences(), espeak_voice)
        model_dir = whisper_model_dir(whisper_dir) if transcriber is None else None  # missing: fail before the work
        synth = _synthesizer(model, device)
        voice = _voice(synth, reference, references.prompt)
        if transcriber is None:
            transcriber = WhisperTranscriber(model_dir, beam_size=beam_size, threads=threads)
        spent: list[float] = []

        def transcribe(recording: Recording) -> str:
            if recording.seconds == 0:  # all zeros (or NaN): nothing to hear, and Whisper would invent text
                return ""
            t = time.perf_counter()
            text = transcriber.transcribe(recording.wave, SAMPLE_RATE)
            spent.append(time.perf_counter() - t)
            return text

        rows, waves = [], []
        for i, (text, ref) in enumerate(zip(references.sentences, references.recordings), start=1):
            t = time.perf_counter()
            try:
                wave = synth(text, reference=voice, seed=seed, **(synthesis_options or {}))
            except TTSZooError:
                raise
            except Exception as e:
                raise EvalError(f"{model}: synthesis failed on sentence {i} "
                                f"({type(e).__name__}: {' '.join(str(e).split())})") from None
            synthesis_seconds = time.perf_counter() - t
            rec = Recording.analyse(wave, synth.sample_rate)
            waves.append(rec.wave)
            t = time.perf_counter()
            rec.transcript = transcribe(rec)
            whisper_seconds = time.perf_counter() - t
            if ref.transcript is None:  # kept in the References for the next call
                ref.transcript = transcribe(ref)
            errors, words = word_errors(text, rec.transcript)
            espeak_errors, _ = word_errors(text, ref.transcript)
            row = SentenceResult(
                i, text, rec.transcript, ref.transcript, errors, espeak_errors, words, errors / max(words, 1),
                espeak_errors / max(words, 1), *_compare(ref, rec), rec.seconds, ref.seconds,
                rec.seconds / ref.seconds if ref.seconds > 0 else None, rec.nonfinite, synthesis_seconds, whisper_seconds)
            rows.append(row)
            if on_sentence is not None:
                on_sentence(row)
        settings = {
            "model": str(model) if isinstance(model, (str, os.PathLike)) else type(synth.model).__name__,
            "reference": str(reference) if isinstance(reference, (str, os.PathLike)) else
            ("given" if reference is not None else f"espeak-ng voice prompt: {VOICE_PROMPT}"),
            "espeak_voice": asdict(references.speaker), "espeak_ng": references.espeak_version,
            "whisper": {"dir": str(getattr(transcriber, "model_dir", "")), "beam_size": getattr(transcriber, "beam_size", None),
                        "threads": getattr(transcriber, "threads", None)},
            "threads": threads, "seed": seed, "sample_rate": SAMPLE_RATE, "f0_tracker": F0_METHOD,
            "synthesis_options": synthesis_options or {},
        }
        report = EvalReport(rows, settings, spent, time.perf_counter() - start)
        if out is not None:
            _write_outputs(out, report, waves, references, prompt_used=reference is None and voice is not None)
            report.wall_seconds = time.perf_counter() - start
        return report
    finally:
        torch.set_num_threads(previous_threads)


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    import io

    import soundfile

    from tts_zoo.data.manifest import atomic_write_bytes

    buf = io.BytesIO()
    soundfile.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(path, buf.getvalue())


def _write_outputs(out: Path, report: EvalReport, waves: list[np.ndarray], references: References,
                   prompt_used: bool) -> None:
    """``model/NN.wav``, ``espeak/NN.wav``, ``voice_prompt.wav`` (when it was the voice), then ``eval.json``."""
    from tts_zoo.data.manifest import atomic_write_text
    from tts_zoo.metrics import SAMPLE_RATE

    width = max(2, len(str(len(waves))))
    for i, (wave, ref) in enumerate(zip(waves, references.recordings), start=1):
        _write_wav(out / "model" / f"{i:0{width}d}.wav", wave, SAMPLE_RATE)
        _write_wav(out / "espeak" / f"{i:0{width}d}.wav", ref.wave, SAMPLE_RATE)
    if prompt_used:
        _write_wav(out / "voice_prompt.wav", references.prompt, SAMPLE_RATE)
    atomic_write_text(out / "eval.json", json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------- the command


def evaluate_command(
    model: Path = typer.Option(..., "--model", "-m", help="A tts-zoo model (checkpoint directory)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: eval.json, model/*.wav, espeak/*.wav."),
    sentences: Optional[Path] = typer.Option(
        None, "--sentences", "-s", help="Sentences file, one a line (default: the built-in held-out set)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", "-r", help="The model's voice: audio file or stored voice .npy (default: espeak-ng's)."),
    voice: str = typer.Option("us_m", "--voice", help="espeak-ng voice of the references: a demo speaker or e.g. en+f2."),
    whisper: Optional[Path] = typer.Option(
        None, "--whisper", help="faster-whisper model folder (default: $TTS_ZOO_WHISPER or ~/.cache/tts-zoo/whisper-base)."),
    limit: Optional[int] = typer.Option(
        None, "--limit", "-n", help="First N sentences (default: 20 of the built-in set, all of a file)."),
    seed: int = typer.Option(0, "--seed", help="Synthesis seed."),
    beam_size: int = typer.Option(5, "--beam-size", help="Whisper beam width (1: greedy)."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', ..."),
) -> None:
    """Measure a model on held-out sentences: Whisper WER (and espeak-ng's, the ceiling), MCD-DTW,
    log-F0 RMSE and duration ratio against espeak-ng's recordings; writes OUT/eval.json and the audio."""
    from rich.console import Console

    if beam_size < 1:
        raise EvalError(f"--beam-size {beam_size}: give 1 (greedy) or more")
    texts = eval_sentences(sentences, limit)
    err = Console(stderr=True, highlight=False)

    def progress(row: SentenceResult) -> None:
        bad = f"  [red]{row.nonfinite_samples} NaN/Inf samples[/]" if row.nonfinite_samples else ""
        err.print(f"[{row.index}/{len(texts)}] WER {row.wer:.2f}  ({row.synthesis_seconds:.1f} s synthesis, "
                  f"{row.whisper_seconds:.1f} s Whisper){bad}")

    report = evaluate(str(model), texts, reference=reference, espeak_voice=voice, whisper_dir=whisper, out_dir=out,
                      seed=seed, beam_size=beam_size, device=device, on_sentence=progress)
    console = Console(highlight=False, soft_wrap=True)
    console.print(report.table())
    s = report.summary()
    per = s["whisper_seconds_per_sentence"]
    console.print(f"Whisper {per or 0:.2f} s per transcription; wall time {s['wall_seconds']:.1f} s; "
                  f"written: {out / 'eval.json'}")
