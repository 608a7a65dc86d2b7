"""The inference pipeline: text → chunks → tokens → style → waveform, whole or streamed.

:class:`Synthesizer` works on any :class:`~tts_zoo.interfaces.TTSModel` through its interface: text
goes through ``model.frontend``, reference audio through ``model.reference_style``, and
``model.synthesize(tokens, style, **options)`` gets only the options its signature declares. The
model's attributes declared by ``TTSModel`` (defaults there) steer it:

* ``max_tokens`` — the longest token sequence it takes (prefix included); longer text is split at
  sentences, then clauses, then words (:mod:`tts_zoo.text_chunks`), never truncated;
* ``token_prefix`` — ids put before every chunk's tokens (StyleTTS 2: one 0);
* ``style_size`` — the width of its style vectors (checks stored voices);
* ``requires_reference`` — True when it cannot synthesize without a reference voice;
* ``end_trim_samples`` — samples cut off the end of every chunk (a known end artefact);
* ``synthesize_chunks(list of [T] tokens, style, **options)`` — a generator of one waveform per
  chunk, which may batch chunks and carry the style across them (long-form synthesis).

The command ``tts-zoo synthesize`` (:func:`synthesize_command`) is a thin layer over it. This module
imports no torch at import time (the CLI imports it to build its command table).
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import typer

from tts_zoo.errors import TTSZooError
from tts_zoo.text_chunks import split_sentences, split_to_fit

__all__ = ["Chunk", "SynthesisError", "Synthesizer", "synthesize_command"]

OPTIONS = ("alpha", "beta", "diffusion_steps", "embedding_scale", "speed", "use_diffusion", "style_carry", "batch_size")
"""Synthesis options passed to the model when its ``synthesize`` declares them."""


class SynthesisError(TTSZooError, ValueError):
    """Bad synthesis input: empty text, nothing speakable, a bad voice, durations or output file."""


@dataclass
class Chunk:
    """One piece of the input synthesized at once."""

    text: str  # the source text (or phonemes) of the piece
    phonemes: str
    tokens: list[int]  # model token ids, the model's prefix included


class Synthesizer:
    """Speech from text with a tts-zoo model: ``tts-zoo synthesize`` from Python.

    ::

        synth = Synthesizer("models/libritts")                 # a checkpoint directory, or a built model
        voice = synth.style("speaker.wav")                      # or a stored voice (.npy)
        wave = synth("Hello there. How are you?", reference=voice, seed=1)   # float32 numpy [S]
        for piece in synth.stream(long_text, reference=voice):  # one array per chunk, as it is ready
            ...

    Options (``alpha``, ``beta``, ``diffusion_steps``, ``embedding_scale``, ``speed``, ...) default to
    ``defaults`` given here, then to the checkpoint recipe's ``synthesis`` section, then to the
    model's own defaults. A model loaded from a path is prepared for inference (weight norm folded,
    training-only modules dropped; ``bf16``: its bfloat16 path, where it has one); a model object
    is used as it is (put in eval mode).

    Threads: synthesis runs on ``threads`` torch threads (the caller's own count is restored
    between chunks). Default: ``$OMP_NUM_THREADS`` when set, else the cores that are idle when the
    synthesizer is made (:mod:`tts_zoo.threads`): on a busy machine, torch's one thread per core
    made synthesis many times slower. Pass ``threads=torch.get_num_threads()`` to keep your own.
    """

    def __init__(self, model: Any, device: str = "auto", bf16: bool = False, threads: Optional[int] = None,
                 **defaults: Any):
        import torch

        from tts_zoo.threads import default_threads

        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SynthesisError(f"threads must be a positive whole number, got {threads!r}")
        self.threads = threads or default_threads(0.1)  # idle cores over 0.1 s (the load average lags)

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        recipe_defaults: dict[str, Any] = {}
        if isinstance(model, (str, os.PathLike)):
            from tts_zoo.checkpoint import load_model

            model = load_model(model, for_inference=True, device=str(self.device))
            recipe_defaults = {k: v for k, v in model.recipe.synthesis.model_dump().items() if k in OPTIONS}
            prepare = model.prepare_for_inference  # e.g. weight norm folded, training-only parts dropped
            if bf16 and "bf16" not in inspect.signature(prepare).parameters:
                raise SynthesisError(f"{type(model).__name__} has no bfloat16 path (leave out --bf16)")
            prepare(**({"bf16": True} if bf16 else {}))
        else:  # a model built by the caller: used as it is, in eval mode, on its own device
            self.device = next(model.parameters()).device
        self.model = model.eval()
        self.defaults = {**recipe_defaults, **defaults}
        self.dropped: Counter[str] = Counter()  # characters the frontend could not encode
        # The options the model declares: those of synthesize_chunks where it has one (it is called).
        signature = inspect.signature(getattr(self.model, "synthesize_chunks", self.model.synthesize)).parameters
        self._accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.values())
        self._declared = set(signature)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    # ------------------------------------------------------------------ text → chunks

    def _fits(self, prefix: tuple[int, ...]) -> Any:
        limit = self.model.max_tokens
        return lambda piece: limit is None or len(prefix) + len(self.model.frontend.encode(piece)) <= limit

    def chunks(self, text: Optional[str] = None, *, phonemes: Optional[str] = None) -> list[Chunk]:
        """Split the input into chunks the model takes (sentences; clauses or words when a sentence
        is too long) and encode them. Exactly one of ``text`` / ``phonemes``."""
        if (text is None) == (phonemes is None):
            raise SynthesisError("give exactly one of text or phonemes")
        source = text if text is not None else phonemes
        if not source or not source.strip():
            raise SynthesisError("empty text: nothing to synthesize (give some words)")
        frontend = self.model.frontend
        prefix = tuple(self.model.token_prefix)
        fits = self._fits(prefix)
        if text is not None:
            # Pieces without a letter or digit say nothing (and phonemizer drops them from a batch).
            sentences = [s for s in split_sentences(text) if any(ch.isalnum() for ch in s)]
            batch = getattr(frontend, "phonemize_batch", None)
            phonemized = batch(sentences) if batch else [frontend.phonemize(s) for s in sentences]
        else:
            sentences = split_sentences(" ".join(phonemes.split()), abbreviations=False)
            phonemized = sentences
        chunks = []
        for sentence, ph in zip(sentences, phonemized):
            pieces = split_to_fit(ph, fits) if ph.strip() else []
            for k, piece in enumerate(pieces):
                tokens = list(prefix) + frontend.encode(piece)
                self.dropped.update(getattr(frontend, "last_dropped", []))
                label = sentence if len(pieces) == 1 else f"{sentence} (part {k + 1}/{len(pieces)})"
                if self._speakable(tokens[len(prefix):]):
                    chunks.append(Chunk(label, piece, tokens))
        if not chunks:
            raise SynthesisError("no speakable symbol in the text (only punctuation, spaces or characters the "
                                 "model's frontend does not know); give some words")
        return chunks

    def _speakable(self, ids: list[int]) -> bool:
        symbols = getattr(self.model.frontend, "symbols", None)
        if not symbols:
            return bool(ids)
        return any(any(ch.isalpha() for ch in symbols[i]) for i in ids)

    # ------------------------------------------------------------------ voices

    def style(self, reference: Any = None) -> Any:
        """A style tensor [1, D] from reference audio (a path; the model's ``reference_style``), a
        stored voice (``.npy`` path, or an array / tensor [D] or [1, D]), or None."""
        import numpy as np
        import torch

        if reference is None:
            return None
        label = str(reference) if isinstance(reference, (str, os.PathLike)) else "voice"
        if isinstance(reference, (str, os.PathLike)):
            path = Path(reference)
            if path.suffix.lower() != ".npy":
                return self._audio_style(path)
            if not path.is_file():
                raise SynthesisError(f"{path}: no such voice file")
            try:
                reference = np.load(path, allow_pickle=False)
            except Exception as e:
                raise SynthesisError(f"{path}: not a stored voice (.npy array) ({type(e).__name__}: {e})") from None
        style = torch.as_tensor(np.asarray(reference) if not isinstance(reference, torch.Tensor) else reference)
        size = self.model.style_size
        if not style.is_floating_point() or style.dim() > 2 or (style.dim() == 2 and style.shape[0] != 1) \
                or (size is not None and style.shape[-1] != size):
            want = f"[{size}]" if size else "[D]"
            raise SynthesisError(f"{label}: a stored voice is a float array "
                                 f"{want} or [1, {size or 'D'}], got {style.dtype} {list(style.shape)}")
        return style.reshape(1, -1).float().to(self.device)

    def _audio_style(self, path: Path) -> Any:
        from tts_zoo.audio import AudioError, load_audio

        wave = load_audio(path, self.sample_rate)  # AudioError names the file
        try:
            import torch

            from tts_zoo.threads import torch_threads

            with torch.inference_mode(), torch_threads(self.threads):
                return self.model.reference_style(wave.to(self.device))
        except NotImplementedError:
            raise SynthesisError(f"{path}: this model takes no reference audio (leave out --reference)") from None
        except AudioError as e:
            raise AudioError(f"{path}: {e}") from None

    @staticmethod
    def save_voice(style: Any, path: Union[str, Path]) -> Path:
        """Store a style [1, D] as a float32 ``.npy`` voice (written atomically)."""
        import numpy as np

        path = Path(path)
        if path.suffix.lower() != ".npy":
            raise SynthesisError(f"{path}: a stored voice is a .npy file")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, style.detach().float().cpu().numpy().reshape(-1))
        os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------ synthesis

    def _options(self, given: dict[str, Any]) -> dict[str, Any]:
        """User options + defaults, restricted to what the model declares."""
        unknown = [k for k in given if k not in OPTIONS]
        if unknown:
            raise SynthesisError(f"unknown synthesis option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
        not_taken = [k for k, v in given.items() if v is not None and not self._takes(k)]
        if not_taken:
            raise SynthesisError(f"{type(self.model).__name__} does not take option(s) {', '.join(not_taken)}")
        merged = {k: v for k, v in self.defaults.items() if k in OPTIONS}
        merged.update({k: v for k, v in given.items() if v is not None})
        return {k: v for k, v in merged.items() if self._takes(k)}

    def _takes(self, name: str) -> bool:
        return self._accepts_any or name in self._declared

    def stream(
        self,
        text: Optional[str] = None,
        *,
        phonemes: Optional[str] = None,
        reference: Any = None,
        seed: Optional[int] = None,
        decoder_seed: Optional[int] = None,
        durations: Any = None,
        dump: Union[str, Path, None] = None,
        **options: Any,
    ) -> Iterator[Any]:
        """Synthesize chunk by chunk: yields float32 numpy arrays [S_i] (the first one as soon as the
        first chunk is done). ``seed`` makes the run reproducible (the style sampling; the decoder's
        noise too, with ``decoder_seed`` defaulting to ``seed``); ``durations`` [T] (frames per
        token, the prefix included) needs a text that fits one chunk; ``dump`` writes every
        chunk's intermediates there. Input errors are raised before anything is computed."""
        chunks = self.chunks(text, phonemes=phonemes)
        style = self.style(reference)
        if style is None and self.model.requires_reference:
            raise SynthesisError(f"{type(self.model).__name__} is a multi-speaker model: give a reference voice "
                                 "(--reference WAV or a stored voice .npy)")
        opts = self._options(options)
        per_chunk_durations = self._durations(durations, chunks)
        return self._run(chunks, style, opts, seed, decoder_seed, per_chunk_durations, dump)

    def _durations(self, durations: Any, chunks: list[Chunk]) -> Optional[list[Any]]:
        import numpy as np
        import torch

        if durations is None:
            return None
        if not self._takes("durations"):
            raise SynthesisError(f"{type(self.model).__name__} does not take given durations")
        source = durations
        if isinstance(durations, (str, os.PathLike)):
            try:
                durations = np.load(durations, allow_pickle=False)
            except Exception as e:
                raise SynthesisError(f"{source}: cannot read durations (.npy array of frames per token) ({e})") from None
        d = torch.as_tensor(durations if isinstance(durations, torch.Tensor) else np.asarray(durations)).flatten()
        label = source if isinstance(source, (str, os.PathLike)) else "durations"
        if len(chunks) != 1:
            raise SynthesisError(f"{label}: given durations need a text that fits one chunk; this one makes "
                                 f"{len(chunks)} (shorten it or leave out the durations)")
        if d.numel() != len(chunks[0].tokens) or bool((d < 0).any()) or bool((d != d.round()).any()):
            raise SynthesisError(f"{label}: expected {len(chunks[0].tokens)} whole, non-negative frame counts (one per "
                                 f"token, the model's prefix included), got {d.numel()} values")
        return [d.long().to(self.device)]

    def _run(self, chunks: list[Chunk], style: Any, opts: dict[str, Any], seed: Optional[int],
             decoder_seed: Optional[int], durations: Optional[list[Any]], dump: Union[str, Path, None]) -> Iterator[Any]:
        import torch

        model = self.model
        extra: dict[str, Any] = {}
        if seed is not None:
            if self._takes("generator"):
                extra["generator"] = torch.Generator(self.device).manual_seed(int(seed))
            decoder_seed = seed if decoder_seed is None else decoder_seed
        want_intermediates = dump is not None and self._takes("return_intermediates")
        if want_intermediates:
            extra["return_intermediates"] = True
        dump_dir = Path(dump) if dump is not None else None
        if dump_dir is not None:
            from tts_zoo.dump import write_dump

            dump_dir.mkdir(parents=True, exist_ok=True)
            (dump_dir / "chunks.txt").write_text("".join(f"{i}\t{c.text}\t{c.phonemes}\n" for i, c in enumerate(chunks)),
                                                 encoding="utf-8")
        tokens = [torch.tensor(c.tokens, dtype=torch.long, device=self.device) for c in chunks]
        if hasattr(model, "synthesize_chunks"):
            if decoder_seed is not None:
                extra["decoder_seed"] = decoder_seed
            outputs = model.synthesize_chunks(tokens, style, durations=durations, **opts, **extra)
        else:
            outputs = self._one_by_one(tokens, style, durations, decoder_seed, {**opts, **extra})
        trim = int(model.end_trim_samples or 0)
        for i, out in enumerate(_stepwise(outputs, self.threads)):
            wave = out.wave if hasattr(out, "wave") else out
            if dump_dir is not None:
                write_dump(dump_dir, i, out if want_intermediates else None, chunks[i])
            wave = wave.detach().flatten()
            yield (wave[:-trim] if trim and wave.numel() > trim else wave).float().cpu().numpy()

    def _one_by_one(self, tokens: list[Any], style: Any, durations: Optional[list[Any]], decoder_seed: Optional[int],
                    opts: dict[str, Any]) -> Iterator[Any]:
        """For models without ``synthesize_chunks``: one ``synthesize`` call per chunk."""
        for i, t in enumerate(tokens):
            call = dict(opts)
            if durations is not None:
                call["durations"] = durations[i]
            if decoder_seed is not None and self._takes("decoder_seed"):
                call["decoder_seed"] = decoder_seed + i
            yield self.model.synthesize(t.unsqueeze(0), style, **call)

    def __call__(self, text: Optional[str] = None, **kwargs: Any) -> Any:
        """The whole waveform (float32 numpy [S]); same arguments as :meth:`stream`."""
        import numpy as np

        pieces = list(self.stream(text, **kwargs))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _stepwise(outputs: Iterator[Any], threads: int) -> Iterator[Any]:
    """Each step of ``outputs`` under ``torch.inference_mode()`` on ``threads`` torch threads, but not
    the caller's code between steps (a ``with`` block around a ``yield`` would leak both into it)."""
    import torch

    from tts_zoo.threads import torch_threads

    while True:
        with torch.inference_mode(), torch_threads(threads):
            try:
                out = next(outputs)
            except StopIteration:
                return
        yield out


# ---------------------------------------------------------------------- the command


def _read_text_file(path: Path) -> str:
    if not path.is_file():
        raise SynthesisError(f"{path}: no such text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SynthesisError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def _check_output(path: Path) -> str:
    """The soundfile subtype to write ``path`` with (float where the format has it: exact numbers)."""
    import soundfile

    fmt = path.suffix.lstrip(".").upper()
    if fmt not in soundfile.available_formats():
        raise SynthesisError(f"{path}: unknown audio format '{path.suffix}' (use .wav, .flac or .ogg)")
    subtypes = soundfile.available_subtypes(fmt)
    return "FLOAT" if "FLOAT" in subtypes else soundfile.default_subtype(fmt)


def synthesize_command(
    model: Path = typer.Option(..., "--model", "-m", help="A tts-zoo model (checkpoint directory)."),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Text to speak."),
    text_file: Optional[Path] = typer.Option(None, "--text-file", "-f", help="UTF-8 text file to speak."),
    phonemes: Optional[str] = typer.Option(None, "--phonemes", "-p", help="Phoneme string to speak (no phonemizer)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output audio file (.wav, .flac, .ogg)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", "-r", help="Reference voice: an audio file, or a stored voice .npy."),
    save_voice: Optional[Path] = typer.Option(None, "--save-voice", help="Store the reference's style as a voice .npy."),
    alpha: Optional[float] = typer.Option(None, help="Acoustic style: weight of the sampled style vs the reference."),
    beta: Optional[float] = typer.Option(None, help="Prosodic style: weight of the sampled style vs the reference."),
    diffusion_steps: Optional[int] = typer.Option(None, help="Style-diffusion sampler steps."),
    embedding_scale: Optional[float] = typer.Option(None, help="Classifier-free guidance scale."),
    diffusion: bool = typer.Option(
        True, "--diffusion/--no-diffusion", help="Sample a style (else use the reference's as is)."),
    style_carry: Optional[float] = typer.Option(None, help="Long text: weight of the previous chunk's style (0 = none)."),
    speed: Optional[float] = typer.Option(None, help="Speaking rate: durations divided by this."),
    durations: Optional[Path] = typer.Option(None, help="Frames per token (.npy), the model's prefix included."),
    seed: Optional[int] = typer.Option(None, help="Seed: same seed, same audio."),
    decoder_seed: Optional[int] = typer.Option(None, help="Seed of the decoder's noise (default: --seed)."),
    batch_size: Optional[int] = typer.Option(None, help="Long text: chunks encoded together."),
    stream: bool = typer.Option(False, "--stream", help="Write the audio chunk by chunk as it is made."),
    dump: Optional[Path] = typer.Option(
        None, "--dump", help="Write the intermediates (tokens, durations, F0, energy, style, plot) here."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ..."),
    bf16: bool = typer.Option(False, "--bf16", help="Faster bfloat16 decoder where the model has one (not bit-exact)."),
) -> None:
    """Speak text (or phonemes) with a tts-zoo model, optionally in the voice of a reference recording."""
    import soundfile

    inputs = [x for x in (text, text_file, phonemes) if x is not None]
    if len(inputs) > 1:
        raise SynthesisError("give only one of --text, --text-file and --phonemes")
    if not inputs and save_voice is None:
        raise SynthesisError("nothing to synthesize: give --text, --text-file or --phonemes (and --out)")
    if inputs and out is None:
        raise SynthesisError("give --out FILE.wav for the audio")
    if save_voice is not None and (reference is None or reference.suffix.lower() == ".npy"):
        raise SynthesisError("--save-voice needs --reference with an audio file")
    subtype = _check_output(out) if out is not None else None
    if text_file is not None:
        text = _read_text_file(text_file)

    synth = Synthesizer(str(model), device=device, bf16=bf16)
    voice = synth.style(reference)
    if not inputs:
        synth.save_voice(voice, save_voice)
        print(f"voice saved: {save_voice}", file=sys.stderr)
        return
    options = dict(alpha=alpha, beta=beta, diffusion_steps=diffusion_steps, embedding_scale=embedding_scale, speed=speed,
                   style_carry=style_carry, batch_size=batch_size, use_diffusion=None if diffusion else False)
    pieces = synth.stream(text, phonemes=phonemes, reference=voice, seed=seed, decoder_seed=decoder_seed,
                          durations=durations, dump=dump, **options)
    assert out is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix}")
    start, first, samples = time.perf_counter(), None, 0
    try:
        with soundfile.SoundFile(str(tmp), "w", samplerate=synth.sample_rate, channels=1, subtype=subtype) as f:
            kept = []
            for piece in pieces:
                first = first if first is not None else time.perf_counter() - start
                samples += len(piece)
                if stream:
                    f.write(piece)
                    f.flush()
                else:
                    kept.append(piece)
            for piece in kept:
                f.write(piece)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    if save_voice is not None:
        synth.save_voice(voice, save_voice)
    seconds, elapsed = samples / synth.sample_rate, time.perf_counter() - start
    note = f", first audio after {first:.2f} s" if stream and first is not None else ""
    print(f"wrote {out}: {seconds:.2f} s of audio in {elapsed:.2f} s (RTF {elapsed / max(seconds, 1e-9):.3f}{note})",
          file=sys.stderr)
    if synth.dropped:
        shown = " ".join(sorted(synth.dropped))
        print(f"note: skipped characters the model's symbol table lacks: {shown}", file=sys.stderr)
