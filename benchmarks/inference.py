"""Inference speed of StyleTTS 2 at the official widths: real-time factor and time to first audio.

    .venv/bin/python benchmarks/inference.py [--runs 5] [--threads 2] [--decoders istftnet hifigan] [--bf16] [--profile]

Models: the model blocks of ``recipes/libritts_istft.yaml`` and ``recipes/libritts_hifigan.yaml``
(official widths, LibriTTS multi-speaker) with random weights (``weights:`` keys removed, so no
pretrained file is needed; training-only modules dropped), prepared for inference.

* **RTF** = compute time / audio duration, median of ``--runs`` runs after one warm-up, with
  ``torch.set_num_threads(--threads)``: ``model.synthesize`` on the fixtures' fixed sentence
  (``meta.text``, 156 tokens) at the fixtures' fixed durations (``infer_fixed/pred_dur``: 272
  frames = 6.80 s), a reference style, 5 diffusion steps (alpha 0.3, beta 0.7).
* **Identical output**: the same call on an unprepared copy (weight norm not folded) running the
  reference's op sequence (``decoders.base.FAST_PATH = False``): max |Δ| of the waveforms.
* **Time to first audio**: ``Synthesizer.stream`` on a ~15 s text (two sentences; durations scaled
  with ``speed`` so that random weights speak at the fixed sentence's rate), from the call
  (phonemizer included) to the first chunk.
* ``--bf16``: also the model prepared with ``bf16=True`` (the generator's convolutions in bfloat16),
  with its mel cepstral distortion against the float32 output.

The reference implementation measured on these machines: RTF 0.461 (iSTFTNet config) and 0.676
(HiFi-GAN config). The machines are shared: compare numbers taken in one run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFERENCE_RTF = {"istftnet": 0.461, "hifigan": 0.676}
GOAL_RTF = {"istftnet": 0.35, "hifigan": 0.45}
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


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decoders", nargs="+", default=["istftnet", "hifigan"], choices=sorted(RECIPES))
    parser.add_argument("--bf16", action="store_true", help="also time the bfloat16-convolution generator")
    parser.add_argument("--profile", action="store_true", help="also time each inference step")
    parser.add_argument("--no-ttfa", action="store_true", help="skip the time-to-first-audio measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tts_zoo_styletts2.decoders.base as decoder_base

    fx = fixtures()
    inf = fx["infer_fixed"]
    tokens, durations = inf["tokens"], inf["pred_dur"]
    audio_seconds = 600 * int(durations.sum()) / 24000
    print(f"torch {torch.__version__}, {args.threads} threads; {tokens.shape[1]} tokens, {audio_seconds:.2f} s of audio; "
          f"median of {args.runs} runs after a warm-up")
    for decoder in args.decoders:
        plain = build(decoder)
        model = build(decoder).prepare_for_inference()  # the same seed: the same weights
        style = torch.randn(1, model.style_size, generator=torch.Generator().manual_seed(1)) * 0.1

        decoder_base.FAST_PATH = False
        reference = synthesize(plain, tokens, style, durations)
        decoder_base.FAST_PATH = True
        wave = synthesize(model, tokens, style, durations)
        assert wave.numel() == 24000 * audio_seconds
        rtf = median_time(lambda: synthesize(model, tokens, style, durations), args.runs) / audio_seconds
        print(f"\n{decoder} (official widths): RTF {rtf:.3f}  = {rtf / REFERENCE_RTF[decoder]:.2f} x the reference's "
              f"{REFERENCE_RTF[decoder]} (goal <= {GOAL_RTF[decoder]}); output vs the reference ops, weight norm unfolded: "
              f"max|Δ| {float((wave - reference).abs().max()):.2g} (max|x| {float(reference.abs().max()):.2g})")
        if args.profile:
            stages = profile_stages(model, tokens, style, durations, args.runs)
            print("  per step (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
        if args.bf16:
            model16 = build(decoder).prepare_for_inference(bf16=True)
            bf16 = synthesize(model16, tokens, style, durations)
            rtf16 = median_time(lambda: synthesize(model16, tokens, style, durations), args.runs) / audio_seconds
            print(f"  bf16 generator convolutions: RTF {rtf16:.3f} (optional goal <= 0.23), MCD vs fp32 "
                  f"{mcd_db(bf16, wave):.2f} dB (goal <= 0.3), max|Δ| {float((bf16 - wave).abs().max()):.2g}")
        if not args.no_ttfa:
            first, seconds, stream_rtf = time_to_first_audio(model, args.runs)
            print(f"  streaming a {seconds:.1f} s text: first audio after {first:.2f} s; whole stream RTF {stream_rtf:.3f}")


if __name__ == "__main__":
    main()
