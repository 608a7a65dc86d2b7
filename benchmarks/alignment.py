"""Alignment quality of a trained text aligner: word and phoneme starts against espeak-ng's own timings.

    .venv/bin/python benchmarks/alignment.py --model runs/demo/checkpoints/latest [--voice us_m] [-n 40]

For ``-n`` sentences (the held-out ``tts_zoo/data/eval_sentences.txt`` first, then demo-corpus
sentences from :func:`tts_zoo.data.demo.demo_sentences`) spoken by one demo voice, espeak-ng gives
the audio and the time each word starts (:meth:`tts_zoo.data.demo.Espeak.synthesize_timings`). The
model's text aligner (a checkpoint that kept it: a training checkpoint, rebuilt with
``registry.build(dir)``) sees the clip exactly as training does (5000 samples of silence each side,
log-mel, tokens ``[0] + frontend.encode(frontend.phonemize(text)) + [0]``), and
:func:`tts_zoo_styletts2.stages.common.align` turns its output into a monotonic path per source:

* ``attention``: MAS over the attention decoder's soft attention (the reference's stage 1/2 path;
  the decoder replaces 10 % of its input tokens by "unk" at random even in eval, as the reference does,
  so ``--seed`` seeds torch's generator);
* ``ctc``: MAS over the CTC head's log-probabilities of the text's tokens (forced alignment);
* ``uniform``: the naive baseline, the frames spread evenly over the tokens (what a model that learned
  nothing does); it gives the numbers a scale.

A word's predicted start is the first frame of its first non-punctuation token (rule ``phoneme``), or
of the space token just before it (rule ``space``); both are reported (rules and frame times:
:mod:`tts_zoo_styletts2.aligner.word_timing`). espeak-ng joins some unstressed words to the next
in both its phonemes and its word events ("in the" → ``ɪnðə``), so the two lists pair up one to one;
a clip where the counts differ is skipped and counted. The first word of each clip is not scored
(espeak-ng puts it at 0 ms, before its leading silence). Rule ``phonemes`` scores every phoneme but
each clip's first against espeak-ng's phoneme events (:meth:`tts_zoo.data.demo.Espeak.synthesize_timings`):
a phoneme's predicted start is the first frame of its first token (a stressed vowel's stress mark).
Reported per source and rule: starts scored (count), median
and mean |error| (ms), mean signed error (bias: > 0 = predicted late), share within 50 and 100 ms.
One aligner frame is 25 ms, so ~6 ms of mean |error| is the floor.

Measured (one thread, ~4 s plus start-up): a demo-sized model (aligner hidden 128, 3 layers) after
7 epochs of ``styletts2_align_pretrain`` (3 of them CTC warm-up, guide target ``ctc``) on 1,140 us_m
clips (the ``--seed 0`` default; other seeds move the attention row by a few ms); 40 sentences, us_m::

    rule     source      words  median ms   mean ms  bias ms  ≤50 ms  ≤100 ms
    phoneme  attention     370       50.4      73.3     62.2    0.49     0.86
    phoneme  ctc           370       44.4      45.7     45.0    0.69     0.97
    phoneme  uniform       370       78.0      86.6     24.6    0.33     0.62
    space    attention     370       19.6      48.9     10.0    0.77     0.88
    space    ctc           370       10.6      19.6     -3.8    0.92     0.94
    space    uniform       370       87.5      90.6    -29.7    0.28     0.57

The CTC path is the better one. Its word boundaries are where espeak-ng's are (space rule: median
11 ms, no bias); the space token takes the first one or two frames of each word's sound, so the
word's first phoneme starts ~45 ms late (phoneme rule). Other male voices score the same (ctc,
phoneme rule: gb_m 43 ms, scot_m 44 ms); a female voice does not (us_f: 136 ms, worse than uniform's
88 ms), as expected of an aligner trained on one male voice.

Phoneme by phoneme (rule ``phonemes``; demo_long's aligner: the demo recipe's 5 CTC-only epochs of
``styletts2_align_pretrain``, 240 steps of 16 clips), 40 sentences, us_m::

    rule     source      count  median ms   mean ms  bias ms  ≤50 ms  ≤100 ms
    phonemes ctc          1469       11.4      14.7      4.2    0.98     1.00
    phonemes uniform      1469       87.4      90.4     -9.4    0.27     0.59

98 % of the phonemes start within 50 ms (two aligner frames) of espeak-ng's, median 11 ms, against
87 ms for the uniform path: the CTC alignment the demo's stage 1 learns from is not what limits its speech.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOURCES = ("attention", "ctc")
RULES = ("phoneme", "space")  # word rules; "phonemes" scores every phoneme's start


def sentences(n: int) -> list[str]:
    """The held-out sentences first, then demo-corpus sentences, ``n`` in all."""
    from tts_zoo.data.demo import demo_sentences
    from tts_zoo.evaluate import eval_sentences

    held_out = eval_sentences(limit=1000)[:n]
    extra = [s for s in demo_sentences(n + len(held_out)) if s not in held_out]
    return held_out + extra[: n - len(held_out)]


def load_aligner_model(path: str) -> torch.nn.Module:
    """The model of a checkpoint directory with its text aligner (training-only parts kept)."""
    from tts_zoo import registry
    from tts_zoo.checkpoint import is_checkpoint
    from tts_zoo.errors import TTSZooError

    if not is_checkpoint(path):
        raise TTSZooError(f"--model {path}: no tts-zoo checkpoint here (give a directory with model.safetensors, "
                          "e.g. runs/demo/checkpoints/latest)")
    model = registry.build(path)
    if getattr(model, "text_aligner", None) is None or getattr(model, "frontend", None) is None:
        raise TTSZooError(f"--model {path}: the checkpoint has no text aligner or text frontend "
                          "(give a training checkpoint, not an exported inference model)")
    return model.eval()


def run(model_path: str, voice: str, n: int, sources: tuple[str, ...], seed: int = 0) -> dict:
    """Score ``n`` sentences; → {"scores": {rule: {source: summary dict}}, "clips", "skipped", "seconds", …}."""
    from tts_zoo.data.demo import DEFAULT_SPEAKERS, Espeak
    from tts_zoo.errors import TTSZooError
    from tts_zoo_styletts2.aligner.word_timing import (aligned_paths, phoneme_first_tokens, phoneme_starts, summarize,
                                                       word_start_errors, word_starts)

    voices = {s.name: s for s in DEFAULT_SPEAKERS}
    if voice not in voices:
        raise TTSZooError(f"--voice {voice}: not a demo voice (choose from {', '.join(voices)})")
    speaker = voices[voice]
    model = load_aligner_model(model_path)
    frontend = model.frontend
    texts = sentences(n)
    torch.manual_seed(seed)
    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    skipped: list[str] = []
    phoneme_skipped: list[str] = []
    start = time.perf_counter()
    espeak = Espeak()
    try:
        for text in texts:
            wave, words, phones = espeak.synthesize_timings(text, speaker)
            phonemes = frontend.phonemize(text)
            tokens = [0, *frontend.encode(phonemes), 0]
            reference = [w.start for w in words]
            paths = aligned_paths(model, wave, tokens, sources)
            first = phoneme_first_tokens(phonemes, [p.phoneme for p in phones]) if len(tokens) == len(phonemes) + 2 else None
            if first is None:
                phoneme_skipped.append(text)
            else:
                for name, path in paths.items():
                    predicted = phoneme_starts(path, first)
                    errors.setdefault(("phonemes", name), []).append(predicted[1:] - np.array([p.start for p in phones[1:]]))
            if word_start_errors(word_starts(paths["uniform"], tokens), reference) is None:
                skipped.append(text)
                continue
            for rule in RULES:
                for name, path in paths.items():
                    errors.setdefault((rule, name), []).append(word_start_errors(word_starts(path, tokens, rule), reference))
    finally:
        espeak.close()
    scores: dict[str, dict[str, dict]] = {rule: {} for rule in (*RULES, "phonemes")}
    for (rule, name), e in errors.items():
        scores[rule][name] = summarize(np.concatenate(e))._asdict()
    return {"model": model_path, "voice": speaker.name, "clips": len(texts) - len(skipped), "skipped": skipped,
            "phoneme_skipped": phoneme_skipped, "scores": scores, "seconds": time.perf_counter() - start}


def print_table(result: dict) -> None:
    print(f"model {result['model']} · voice {result['voice']} · {result['clips']} clips scored, "
          f"{len(result['skipped'])} skipped (word counts differ), {len(result['phoneme_skipped'])} without phoneme "
          f"scores (espeak-ng's phonemes do not spell the frontend's) · {result['seconds']:.1f} s")
    print(f"{'rule':<8} {'source':<10} {'count':>6} {'median ms':>10} {'mean ms':>9} {'bias ms':>8} {'≤50 ms':>7} {'≤100 ms':>8}")
    for rule, by_source in result["scores"].items():
        for name, s in by_source.items():
            print(f"{rule:<8} {name:<10} {s['words']:>6} {s['median_ms']:>10.1f} {s['mean_ms']:>9.1f} {s['bias_ms']:>8.1f} "
                  f"{s['within_50']:>7.2f} {s['within_100']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a checkpoint directory that kept the text aligner")
    parser.add_argument("--voice", default="us_m", help="a demo voice (tts_zoo.data.demo.DEFAULT_SPEAKERS)")
    parser.add_argument("-n", type=int, default=40, help="number of sentences")
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated: attention, ctc")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seeds the attention decoder's random token masking")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from tts_zoo.errors import TTSZooError

    torch.set_num_threads(args.threads)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    try:
        if args.n < 1:
            raise TTSZooError(f"-n {args.n}: give at least 1 sentence")
        if not sources or set(sources) - set(SOURCES):
            raise TTSZooError(f"--sources {args.sources!r}: choose from {', '.join(SOURCES)}")
        result = run(args.model, args.voice, args.n, sources, args.seed)
    except TTSZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(result)
    if args.json:
        from tts_zoo.data.manifest import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
