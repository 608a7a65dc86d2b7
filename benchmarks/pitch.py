"""Pitch trackers for F0 labels: accuracy and speed, on one thread. Prints a table.

    python benchmarks/pitch.py [--signals 8] [--clips 16] [--seconds 3] [--snr 20]

Two test sets, both at 24 kHz with the log-mel's hop (300 samples = 12.5 ms):

* **synthetic**: harmonic tones (harmonic k at amplitude 1/k, random phase) with a known F0 contour
  (a glide between two random pitches in 70-350 Hz plus 5 Hz vibrato), unvoiced gaps of white noise
  and silence, plus white noise at ``--snr`` dB. Truth is exact; frames within 2 hops of a voicing
  boundary are not scored.
* **espeak**: clips of the demo corpus voices (:data:`tts_zoo.data.demo.DEFAULT_SPEAKERS`, ordinary
  sentences). No ground truth exists, so each tracker is scored against the **others' consensus**
  (leave one out): F0 truth = the median of the other trackers on frames where all of them are voiced
  and agree within 50 cents; voicing truth = their majority vote.

Metrics: GPE — gross pitch error, % of frames voiced in both truth and estimate with |error| > 20 %;
cents — median |error| in cents on those frames; VDE — voicing decision error, % of scored frames
where voiced/unvoiced differ; RTF — tracker seconds per second of audio (median over the set, after
a warm-up; one thread).

Trackers: ``harvest``, ``dio`` (pyworld), ``pyin`` (librosa) through :func:`tts_zoo.pitch.estimate_f0`,
and torchcrepe ``tiny``/``full`` (viterbi decoding, periodicity ≥ 0.21 = voiced) when installed
(it imports torchaudio only to read files; a stand-in module is used when torchaudio cannot load).

Measured (``--signals 6 --clips 12 --crepe tiny``; a loaded 2-core machine, so RTFs are high; on an
idle one torchcrepe tiny ran at ~0.23)::

    set                  tracker       GPE %  |cents|   VDE %     RTF
    synthetic 20 dB      harvest        0.00      0.9    1.65   1.312
    synthetic 20 dB      dio            0.00      0.9    0.45   0.070
    synthetic 20 dB      pyin           0.00     22.8    5.09   1.444
    synthetic 20 dB      crepe-tiny     0.00      9.0    0.22   1.384
    espeak (vs others)   harvest        7.68      4.6   13.57   0.998
    espeak (vs others)   dio            0.22      3.8   27.65   0.051
    espeak (vs others)   pyin           0.73     30.0   21.38   0.973
    espeak (vs others)   crepe-tiny     0.00     10.7   12.94   1.033

Harvest's gross errors are octave-down (ratio 0.5) on the high female voices (rp_f, nyc_f: a third of
their frames); DIO's voicing errors are mostly voiced frames called unvoiced. DIO is the default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from collections.abc import Callable

import numpy as np
import torch

from tts_zoo.audio import resample
from tts_zoo.pitch import estimate_f0, frame_count

SR, HOP = 24000, 300
FMIN, FMAX = 50.0, 600.0


# ------------------------------------------------------------------------------------ test signals


def synthetic(rng: np.random.Generator, seconds: float, snr_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A harmonic signal with known F0 → (wave [S], f0 [F] Hz (0 unvoiced), scored [F] bool)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    lo, hi = np.exp(rng.uniform(np.log(70), np.log(350), 2))
    f0 = lo + (hi - lo) * t / seconds + 0.03 * lo * np.sin(2 * np.pi * 5 * t)
    voiced = np.ones(n, bool)
    for start in rng.uniform(0.3, seconds - 0.5, 2):  # two unvoiced gaps (noise, then silence)
        voiced[int(start * SR): int((start + rng.uniform(0.1, 0.25)) * SR)] = False
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = np.zeros(n)
    for k in range(1, int(SR / 2 / f0.max())):
        wave += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    wave *= voiced
    gap = ~voiced
    wave[gap] += 0.05 * rng.standard_normal(gap.sum()) * (np.arange(n)[gap] % 2 == 0)  # fricative-like noise
    wave *= 0.3 / np.abs(wave).max()
    power = np.mean(wave[voiced] ** 2)
    wave += rng.standard_normal(n) * np.sqrt(power / 10 ** (snr_db / 10))
    centers = np.minimum(np.arange(frame_count(n, HOP)) * HOP, n - 1)
    truth = np.where(voiced[centers], f0[centers], 0.0)
    edge = np.convolve(np.abs(np.diff(voiced[centers].astype(int), prepend=voiced[0])), np.ones(5), "same") > 0
    return wave.astype(np.float32), truth, ~edge


def espeak_clips(count: int) -> list[np.ndarray]:
    """``count`` demo-corpus clips: every default speaker in turn, ordinary sentences, 24 kHz."""
    from tts_zoo.data.demo import DEFAULT_SPEAKERS, ESPEAK_SAMPLE_RATE, Espeak, demo_sentences

    engine = Espeak()
    try:
        clips = []
        for i, text in enumerate(demo_sentences(count, seed=1)):
            pcm = engine.synthesize(text, DEFAULT_SPEAKERS[i % len(DEFAULT_SPEAKERS)])
            x = torch.from_numpy(pcm.astype(np.float32) / 32768)
            clips.append(resample(x, ESPEAK_SAMPLE_RATE, SR).numpy())
        return clips
    finally:
        engine.close()


# ------------------------------------------------------------------------------------ trackers


def _crepe(model: str) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import torchaudio  # noqa: F401
    except Exception:  # CUDA-linked builds fail to import here; torchcrepe needs it only for file I/O
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import torchcrepe
    except ImportError:
        return None

    def track(x: np.ndarray) -> np.ndarray:
        x16 = resample(torch.from_numpy(x), SR, 16000)[None]
        f0, per = torchcrepe.predict(x16, 16000, 200, FMIN, FMAX, model, decoder=torchcrepe.decode.viterbi,
                                     return_periodicity=True, batch_size=512, device="cpu")
        f0 = torch.where(per >= 0.21, f0, 0.0)[0].numpy()
        n = frame_count(len(x), HOP)
        return np.pad(f0, (0, max(0, n - len(f0))))[:n]

    return track


def trackers(crepe_models: list[str]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    found: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for method in ("harvest", "dio", "pyin"):
        try:
            estimate_f0(np.zeros(SR, np.float32), SR, method=method)  # warm-up (pyin's numba compiles ~20 s)
        except ImportError as e:
            print(f"skipping {method}: {e}")
            continue
        found[method] = lambda x, m=method: estimate_f0(x, SR, HOP, FMIN, FMAX, method=m)
    for model in crepe_models:
        track = _crepe(model)
        if track is None:
            print("skipping torchcrepe: not installed")
            break
        track(np.zeros(SR, np.float32))
        found[f"crepe-{model}"] = track
    return found


# ------------------------------------------------------------------------------------ scoring


def score(est: np.ndarray, truth: np.ndarray, scored: np.ndarray, voiced_truth: np.ndarray) -> dict[str, list]:
    """Per-clip counts: gross errors, cents errors (list), voicing errors, frames."""
    both = scored & (truth > 0) & (est > 0)
    cents = np.abs(1200 * np.log2(est[both] / truth[both]))
    gross = np.abs(est[both] / truth[both] - 1) > 0.2
    vde = (voiced_truth[scored] != (est[scored] > 0)).sum()
    return {"gross": [int(gross.sum())], "both": [int(both.sum())], "cents": list(cents),
            "vde": [int(vde)], "frames": [int(scored.sum())]}


def _consensus(others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Other trackers' F0 [K, F] → (F0 truth: their median where all are voiced and agree within 50
    cents, else 0 (not scored); voicing truth: their majority vote)."""
    voiced = others > 0
    safe = np.where(voiced, others, 1.0)
    agree = voiced.all(0) & (1200 * np.log2(safe.max(0) / safe.min(0)) < 50)
    return np.where(agree, np.median(safe, 0), 0.0), voiced.mean(0) > 0.5


def run(name: str, clips: list, tracks: dict, consensus: bool) -> list[tuple]:
    outputs = {m: [] for m in tracks}
    times = {m: [] for m in tracks}
    for wave, *_ in clips:
        for m, track in tracks.items():
            start = time.perf_counter()
            outputs[m].append(track(wave))
            times[m].append((time.perf_counter() - start) / (len(wave) / SR))
    rows = []
    for m in tracks:
        acc: dict[str, list] = {}
        for i, (wave, truth, scored) in enumerate(clips):
            est = outputs[m][i]
            if consensus:  # the other trackers' agreement stands in for the unknown truth
                truth, voiced_truth = _consensus(np.stack([outputs[o][i] for o in tracks if o != m]))
                s = score(est, truth, np.ones(len(est), bool), voiced_truth)
            else:
                s = score(est, truth, scored, truth > 0)
            for k, v in s.items():
                acc.setdefault(k, []).extend(v)
        gpe = 100 * sum(acc["gross"]) / max(1, sum(acc["both"]))
        vde = 100 * sum(acc["vde"]) / max(1, sum(acc["frames"]))
        rows.append((name, m, gpe, float(np.median(acc["cents"])) if acc["cents"] else float("nan"), vde,
                     statistics.median(times[m])))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--signals", type=int, default=8)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crepe", default="tiny,full", help="torchcrepe models to include ('' = none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tracks = trackers([m for m in args.crepe.split(",") if m])
    rng = np.random.default_rng(args.seed)
    synth = [synthetic(rng, args.seconds, args.snr) for _ in range(args.signals)]
    speech = [(x, None, None) for x in espeak_clips(args.clips)]
    print(f"{'set':<20} {'tracker':<11} {'GPE %':>7} {'|cents|':>8} {'VDE %':>7} {'RTF':>7}", flush=True)
    for rows in (run(f"synthetic {args.snr:g} dB", synth, tracks, consensus=False),
                 run("espeak (vs others)", speech, tracks, consensus=True)):
        for name, m, gpe, cents, vde, rtf in rows:
            print(f"{name:<20} {m:<11} {gpe:7.2f} {cents:8.1f} {vde:7.2f} {rtf:7.3f}", flush=True)


if __name__ == "__main__":
    main()
