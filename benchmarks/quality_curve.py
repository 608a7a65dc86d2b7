"""Quality against training time: every checkpoint of a run, measured with Whisper.

    .venv/bin/python benchmarks/quality_curve.py --run runs/demo [-n 10] [--items 6] [--json curve.json] [--plot curve.png]

For each checkpoint (minutes = its time since the run's ``recipe.yaml`` was written):

- **reconstruction WER**: validation utterances rebuilt by the decoder from their own alignment,
  JDC F0, energy and acoustic style (teacher-forced, as stage 1 trains it), transcribed by Whisper
  against their text: what the decoder and the alignment have learned, before durations matter;
- **synthesis WER / duration ratio / MCD**: ``tts_zoo.evaluate`` on held-out sentences (only for
  checkpoints taken in or after stage 2, whose duration predictor and prosodic style are trained).

Run it after training (it competes for the CPU); keep more checkpoints with ``train.keep_checkpoints``.
``--plot`` draws both WERs against minutes with matplotlib (not a tts-zoo dependency: ``pip install
matplotlib``); ``--from-json`` redraws a plot from a saved ``--json`` without measuring again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tts_zoo import registry
from tts_zoo.asr import WhisperTranscriber, word_errors
from tts_zoo.checkpoint import load_checkpoint, load_state_strict, stored_recipe
from tts_zoo.data.manifest import read_manifest
from tts_zoo.evaluate import References, eval_sentences, evaluate
from tts_zoo.train.data import make_loaders, speech_datasets
from tts_zoo.train.distributed import setup
from tts_zoo_styletts2.stages.common import align, prosody_targets


@torch.no_grad()
def reconstruction_wer(checkpoint: Path, transcriber, items: int) -> float:
    """Whisper WER of ``items`` validation utterances rebuilt teacher-forced by the decoder."""
    from tts_zoo.data.collate import Collater

    ckpt = load_checkpoint(checkpoint)
    recipe = stored_recipe(ckpt)
    model = registry.build(recipe)
    load_state_strict(model, ckpt.state_dict, ckpt.path)
    model.eval()
    stage = recipe.train.stages[ckpt.info["training"]["stage_index"]]
    source = stage.get("alignment", "attention")
    texts = {Path(r.audio).name: r.text for r in read_manifest(recipe.data.val)}
    _, val_set = speech_datasets(recipe, model.frontend)
    _, _, loader = make_loaders(recipe, setup("cpu"), val_set, val_set, Collater())
    errors = words = done = 0
    for batch in loader:
        _, aln, text_mask = align(model, batch, zero_padding=True, source=source)
        asr = model.text_encoder(batch.texts, batch.input_lengths, text_mask) @ aln.path
        for i in range(len(batch.paths)):
            n = int(batch.output_lengths[i])
            mel = batch.mels[i : i + 1, :, :n]
            f0, energy = prosody_targets(model, mel)
            wave = model.decoder(asr[i : i + 1, :, : n // 2], f0, energy, model.style_encoder(mel.unsqueeze(1)))
            e, w = word_errors(texts[Path(batch.paths[i]).name], transcriber.transcribe(wave.flatten().numpy(), 24000))
            errors, words, done = errors + e, words + w, done + 1
            if done == items:
                return errors / max(words, 1)
    return errors / max(words, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run directory (holds recipe.yaml and checkpoints/)")
    parser.add_argument("-n", "--sentences", type=int, default=10, help="held-out sentences for synthesis WER")
    parser.add_argument("--items", type=int, default=6, help="validation utterances for reconstruction WER")
    parser.add_argument("--reference", help="voice for synthesis (default: the first validation clip)")
    parser.add_argument("--voice", default="us_m", help="espeak-ng voice of the reference recordings")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--plot", help="draw WER against training minutes into this image (needs matplotlib)")
    parser.add_argument("--from-json", help="rows saved by --json: only draw --plot from them")
    parser.add_argument("--title", help="the plot's title (default: the run directory)")
    args = parser.parse_args()
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before minutes of measuring, not after)
        except ImportError:
            parser.exit(2, "error: --plot needs matplotlib: .venv/bin/pip install matplotlib\n")
    if args.from_json:
        if not args.plot:
            parser.exit(2, "error: --from-json only draws: give --plot too\n")
        plot(json.loads(Path(args.from_json).read_text()), args.plot, args.title or args.from_json)
        return
    run = Path(args.run)
    start = (run / "recipe.yaml").stat().st_mtime
    checkpoints = sorted((p for p in (run / "checkpoints").glob("step_*") if (p / "model.safetensors").is_file()),
                         key=lambda p: int(p.name.split("_")[1]))
    transcriber = WhisperTranscriber()
    references = References.make(eval_sentences(limit=args.sentences), args.voice)
    rows = []
    print(f"{'step':>6} {'min':>6}  {'stage':24s} {'recon WER':>9} {'synth WER':>9} {'dur ×':>6} {'MCD dB':>7}")
    for ckpt in checkpoints:
        stored = load_checkpoint(ckpt)
        info = stored.info["training"]
        row = {"step": info["step"], "minutes": round((ckpt.stat().st_mtime - start) / 60, 2), "stage": info["stage"]}
        if info["stage"] in ("styletts2_stage1", "styletts2_stage2"):
            row["reconstruction_wer"] = round(reconstruction_wer(ckpt, transcriber, args.items), 3)
        if info["stage"] == "styletts2_stage2":
            val = stored_recipe(stored).data.val
            reference = args.reference or read_manifest(val)[0].audio  # paths come resolved
            summary = evaluate(str(ckpt), reference=reference, transcriber=transcriber, references=references).to_dict()["summary"]
            row.update(synthesis_wer=summary.get("wer"), duration_ratio=summary.get("duration_ratio_median"),
                       mcd_db=summary.get("mcd_db"))
        rows.append(row)
        fmt = lambda k, w: f"{row[k]:>{w}.3f}" if isinstance(row.get(k), (int, float)) else f"{'-':>{w}}"
        print(f"{row['step']:>6} {row['minutes']:>6.1f}  {row['stage']:24s} {fmt('reconstruction_wer', 9)} "
              f"{fmt('synthesis_wer', 9)} {fmt('duration_ratio', 6)} {fmt('mcd_db', 7)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot, args.title or str(run))


def plot(rows: list[dict], path: str, title: str) -> None:
    """Reconstruction and synthesis WER against training minutes (a dotted line where stage 2 starts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for key, label, style in (("reconstruction_wer", "reconstruction WER (teacher-forced)", "o-"),
                              ("synthesis_wer", "synthesis WER (held-out sentences)", "s-")):
        points = [(r["minutes"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=4)
    stage2 = [r["minutes"] for r in rows if r["stage"] == "styletts2_stage2"]
    if stage2:
        ax.axvline(min(stage2), color="grey", linestyle=":", linewidth=1)
        ax.text(min(stage2), 1.02, " stage 2", color="grey", fontsize=8, va="top")
    ax.set(xlabel="training minutes (2 CPU cores)", ylabel="Whisper-base WER", ylim=(0, 1.05), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
