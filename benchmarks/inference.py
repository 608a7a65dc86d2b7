"""Inference speed of StyleTTS 2 at the official widths, against the reference's op sequence measured in
the same run: real-time factors, their ratio and its spread, time to first audio.

    .venv/bin/python benchmarks/inference.py [--runs 5] [--threads 2] [--decoders istftnet hifigan] [--bf16] [--channel-major] [--profile] [--ops 15]

Models: the model blocks of ``recipes/libritts_istft.yaml`` and ``recipes/libritts_hifigan.yaml``
(official widths, LibriTTS multi-speaker) with random weights (``weights:`` keys removed, so no
pretrained file is needed; training-only modules dropped).

* **Baseline, same run**: the *reference op sequence* is the same model unprepared (weight norm not
  folded, recomputed at every call as in the reference) running the reference's ops
  (``decoders.base.FAST_PATH = False``: out-of-place AdaIN/Snake chains); the *fast path* is the
  model after ``prepare_for_inference()`` with ``FAST_PATH = True``. Both run ``model.synthesize`` on
  the fixtures' fixed sentence (``meta.text``, 156 tokens) at its fixed durations
  (``infer_fixed/pred_dur``: 272 frames = 6.80 s), a reference style, 5 diffusion steps (alpha 0.3,
  beta 0.7), interleaved (reference, fast[, bf16], reference, ...) for ``--runs`` rounds after a
  warm-up, with ``torch.set_num_threads(--threads)``. Printed: each one's median seconds and RTF
  (compute time / audio duration), the speed-up (reference median / fast median) and the min-max of
  the per-round speed-ups, the load average, and max |Δ| between the two waveforms (the fast path's
  time-major convolutions sum in another order: ~1e-5 of a waveform of peak 1;
  ``decoders.base.TIME_MAJOR = False`` makes it 0).
* ``--channel-major``: also the fast path with ``decoders.base.TIME_MAJOR = False`` (maps kept
  [B, C, T] in memory: the reference's numbers bit for bit, without the channels-last convolutions).
* ``--bf16``: also the model prepared with ``bf16=True`` (the generator's convolutions in bfloat16),
  in the same rounds, with its mel cepstral distortion against the float32 output.
* **Time to first audio**: ``Synthesizer.stream`` on a ~15 s text (two sentences; durations scaled
  with ``speed`` so that random weights speak at the fixed sentence's rate), from the call
  (phonemizer included) to the first chunk.
* ``--profile``: seconds per inference step; ``--ops N``: the fast path's N most expensive torch ops
  (self CPU time, share of the total) over one synthesis.

History: before the baseline was measured in the same run, this benchmark compared with stored
reference RTFs (0.461 iSTFTNet, 0.676 HiFi-GAN), taken on another day at another load; issue 13
showed that such a comparison does not hold.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_SPEEDUP = 1.4  # issue 13: fp32 fast path >= 1.4x the reference op sequence (bf16: >= 2x)
RECIPES = {"istftnet": "recipes/libritts_istft.yaml", "hifigan": "recipes/libritts_hifigan.yaml"}
SECOND_SENTENCE = ("The model was trained on hundreds of hours of read English speech, and it can imitate "
                   "the voice of a speaker it has never heard before.")


def build(decoder: str) -> torch.nn.Module:
    """The recipe's model at the official widths, random weights, training-only modules dropped."""
    from tts_zoo import registry
    from tts_zoo.checkpoint import _without_pretrained_paths
    from tts_zoo.recipe import load_recipe

    recipe = load_recipe(REPO / RECIPES[decoder])
    block = _without_pretrained_paths(recipe.model)
    cls = registry.default.load_class(registry.default.resolve(block["component"], "model"))
    torch.manual_seed(0)
    return registry.build_component(cls.inference_block(block), "model").eval()


def fixtures() -> dict:
    from tests.styletts2.reference import FIXTURES

    return torch.load(FIXTURES / "tiny_hifigan" / "fixtures.pt", weights_only=True)


def synthesize(model, tokens, style, durations) -> torch.Tensor:
    return model.synthesize(tokens, style, alpha=0.3, beta=0.7, diffusion_steps=5, durations=durations,
                            generator=torch.Generator().manual_seed(0), decoder_seed=0)


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, one call of each per round (after a warm-up round), so
    that a change in the machine's load hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if i:
                times[name].append(time.perf_counter() - start)
    return times


def speedup(times: dict[str, list[float]], baseline: str, name: str) -> str:
    """'1.23x (1.10-1.31)': median of the baseline over the median of ``name``, and the min-max of
    the per-round ratios."""
    ratios = [b / t for b, t in zip(times[baseline], times[name])]
    return (f"{statistics.median(times[baseline]) / statistics.median(times[name]):.2f}x "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")


def load_average() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def mcd_db(a: torch.Tensor, b: torch.Tensor, n_coefficients: int = 13) -> float:
    """Mel cepstral distortion (dB) between two waveforms of equal length: cepstra from the log-mel
    (DCT-II, orthonormal) without c0, (10 / ln 10)·sqrt(2·Σ Δc²) averaged over frames."""
    from tts_zoo.audio import dct_matrix, log_mel

    dct = dct_matrix(n_coefficients + 1, 80)
    # log_mel is (ln(mel) + 4) / 4: back to natural-log mel before the cepstrum
    ca, cb = [((log_mel(w) * 4 - 4).transpose(-1, -2) @ dct)[..., 1:] for w in (a, b)]
    return float((10 / math.log(10) * torch.sqrt(2 * ((ca - cb) ** 2).sum(-1))).mean())


def profile_stages(model, tokens, style, durations, runs: int) -> dict[str, float]:
    """Seconds per call of each inference step (median over runs)."""
    spent: dict[str, list[float]] = {}
    originals = {}
    for name in ("encode_text", "sample_style", "predict_durations", "decode"):
        original = getattr(model, name)
        originals[name] = original

        def timed(*args, _f=original, _n=name, **kwargs):
            start = time.perf_counter()
            out = _f(*args, **kwargs)
            spent.setdefault(_n, []).append(time.perf_counter() - start)
            return out

        setattr(model, name, timed)
    try:
        for _ in range(runs):
            synthesize(model, tokens, style, durations)
    finally:
        for name in originals:
            delattr(model, name)
    return {k: statistics.median(v) for k, v in spent.items()}


def time_to_first_audio(model, runs: int) -> tuple[float, float, float]:
    """(seconds to the first chunk, seconds of audio, RTF of the whole stream) for a ~15 s text."""
    from tts_zoo.synthesize import Synthesizer

    fx = fixtures()
    inf = fx["infer_fixed"]
    synth = Synthesizer(model)
    style = torch.randn(1, model.style_size, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():  # random weights: scale durations to the fixed sentence's rate
        _, _, d_en, mask = model.encode_text(inf["tokens"])
        _, _, predicted = model.predict_durations(d_en, style[:, model.style_dim:], torch.tensor([156]), mask)
    speed = float(predicted.sum() / inf["pred_dur"].sum())
    text = f"{fx['meta']['text']} {SECOND_SENTENCE}"
    firsts, totals, samples = [], [], 0
    for i in range(runs + 1):
        start = time.perf_counter()
        stream = synth.stream(text, reference=style, seed=0, speed=speed)
        first = next(stream)
        first_at = time.perf_counter() - start
        samples = len(first) + sum(len(piece) for piece in stream)
        if i:  # the first run warms the phonemizer up
            firsts.append(first_at)
            totals.append(time.perf_counter() - start)
    seconds = samples / model.sample_rate
    return statistics.median(firsts), seconds, statistics.median(totals) / seconds


def top_ops(fn: Callable[[], object], n: int) -> list[tuple[str, float, float]]:
    """(op, self CPU seconds, share of the total) of the ``n`` most expensive torch ops in one call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    return [(e.key, e.self_cpu_time_total / 1e6, e.self_cpu_time_total / total) for e in ops[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds after a warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decoders", nargs="+", default=["istftnet", "hifigan"], choices=sorted(RECIPES))
    parser.add_argument("--bf16", action="store_true", help="also time the bfloat16-convolution generator")
    parser.add_argument("--channel-major", action="store_true",
                        help="also time the fast path with decoders.base.TIME_MAJOR = False (the reference ops bit for bit)")
    parser.add_argument("--profile", action="store_true", help="also time each inference step")
    parser.add_argument("--ops", type=int, default=0, help="also list the fast path's N most expensive torch ops")
    parser.add_argument("--no-ttfa", action="store_true", help="skip the time-to-first-audio measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tts_zoo_styletts2.decoders.base as decoder_base

    fx = fixtures()
    inf = fx["infer_fixed"]
    tokens, durations = inf["tokens"], inf["pred_dur"]
    audio_seconds = 600 * int(durations.sum()) / 24000
    print(f"torch {torch.__version__}, {args.threads} threads; {tokens.shape[1]} tokens, {audio_seconds:.2f} s of audio; "
          f"medians of {args.runs} interleaved rounds after a warm-up; {load_average()}")
    for decoder in args.decoders:
        plain = build(decoder)  # the reference op sequence: weight norm recomputed at every call
        model = build(decoder).prepare_for_inference()  # the same seed: the same weights
        style = torch.randn(1, model.style_size, generator=torch.Generator().manual_seed(1)) * 0.1

        def reference() -> torch.Tensor:
            decoder_base.FAST_PATH = False
            try:
                return synthesize(plain, tokens, style, durations)
            finally:
                decoder_base.FAST_PATH = True

        def fast(m: torch.nn.Module = model) -> torch.Tensor:
            return synthesize(m, tokens, style, durations)

        def channel_major() -> torch.Tensor:
            decoder_base.TIME_MAJOR = False
            try:
                return fast()
            finally:
                decoder_base.TIME_MAJOR = True

        runs: dict[str, Callable[[], object]] = {"reference ops": reference, "fast path": fast}
        if args.channel_major:
            runs["channel-major"] = channel_major
        if args.bf16:
            model16 = build(decoder).prepare_for_inference(bf16=True)
            runs["fast path, bf16"] = lambda: fast(model16)
        wave, expected = fast(), reference()
        assert wave.numel() == 24000 * audio_seconds
        times = interleaved(runs, args.runs)
        print(f"\n{decoder} (official widths): output of the fast path vs the reference ops: max|Δ| "
              f"{float((wave - expected).abs().max()):.2g} (max|x| {float(expected.abs().max()):.2g}); {load_average()}")
        for name, t in times.items():
            ratio = "" if name == "reference ops" else f"  speed-up {speedup(times, 'reference ops', name)}"
            print(f"  {name:16s} median {statistics.median(t):6.3f} s  RTF {statistics.median(t) / audio_seconds:.3f}{ratio}")
        print(f"  (goal: fast path >= {GOAL_SPEEDUP}x, bf16 >= 2x)")
        if args.bf16:
            bf16 = fast(model16)
            print(f"  bf16 vs fp32: MCD {mcd_db(bf16, wave):.2f} dB (goal <= 0.3), max|Δ| {float((bf16 - wave).abs().max()):.2g}")
        if args.profile:
            stages = profile_stages(model, tokens, style, durations, args.runs)
            print("  per step (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
        if args.ops:
            print(f"  fast path's top {args.ops} torch ops (self CPU time, share):")
            for op, seconds, share in top_ops(fast, args.ops):
                print(f"    {op:40s} {seconds:7.3f} s {100 * share:5.1f} %")
        if not args.no_ttfa:
            first, seconds, stream_rtf = time_to_first_audio(model, args.runs)
            print(f"  streaming a {seconds:.1f} s text: first audio after {first:.2f} s; whole stream RTF {stream_rtf:.3f}")


if __name__ == "__main__":
    main()
