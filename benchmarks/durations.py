"""Has the duration predictor learned? Its durations against the aligner's, on held-out recordings.

    .venv/bin/python benchmarks/durations.py --model runs/demo/checkpoints/latest [--manifest data/demo/val.jsonl]

For every utterance of ``--manifest`` (default: the recipe's validation manifest) a training checkpoint
(one that kept the text aligner) gives two durations per token, in aligner frames (2 mel frames): the
target stage 2 trains on (monotonic path of the aligner, ``--alignment`` as in the recipe's stage 2) and
the predictor's, from PL-BERT and the prosodic style of the whole utterance, rounded and at least 1 as
synthesis uses them. The framing tokens at both ends are left out, as the duration loss leaves them out.

Reported: tokens, mean and spread of both, L1 between them, the L1 of the best constant (the aligned
median: what a predictor that learned nothing scores) and the Pearson correlation. A predictor stuck at
its mean has a spread near 0 and a correlation near 0 whatever its L1.

Measured (one thread, ~5 s): the 40 held-out clips of data/demo/val.jsonl (2,956 tokens; aligned durations
mean 2.06, spread 0.96 frames), stage 2 from the same stage 1 (demo_long's, step 2330), 380 steps:

    stage 2                                               predicted spread  L1     best constant  correlation
    two full epochs (the demo before data_init)           0.06              0.603  0.600          -0.01
    decoder_epoch 1 + data_init (the session-5 demo)      0.49              0.535  0.600           0.55
    decoder_epoch 2 (no decoder pass: recipes/demo.yaml)  0.51              0.527  0.600           0.56
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
sys.path.insert(0, str(REPO / "benchmarks"))


def stage2_alignment(recipe) -> str:
    """The alignment source of the recipe's (last) stage-2 block, else the reference's ``attention``."""
    source = "attention"
    for block in recipe.train.stages or []:
        args = block.model_dump() if hasattr(block, "model_dump") else dict(block)
        if args.get("component") in ("styletts2_stage2", "styletts2_finetune"):
            source = args.get("alignment", source)
    return source


@torch.no_grad()
def run(model_path: str, manifest: str | None, alignment: str | None, batch_size: int = 8) -> dict:
    from alignment import load_aligner_model

    from tts_zoo.data.collate import Collater
    from tts_zoo.errors import TTSZooError
    from tts_zoo.train.data import make_loaders, speech_datasets
    from tts_zoo.train.distributed import setup
    from tts_zoo_styletts2.stages.common import align

    start = time.perf_counter()
    model = load_aligner_model(model_path)
    recipe = model.recipe
    manifest = manifest or recipe.data.val
    if not manifest or not Path(manifest).is_file():
        raise TTSZooError(f"--manifest {manifest}: no such manifest (give a prepared .jsonl, e.g. data/demo/val.jsonl)")
    alignment = alignment or stage2_alignment(recipe)
    data = recipe.data.model_copy(update={"train": str(manifest), "val": None, "batch_size": batch_size})
    recipe = recipe.model_copy(update={"data": data})
    dataset, _ = speech_datasets(recipe, model.frontend)
    loader, batches, _ = make_loaders(recipe, setup("cpu"), dataset, None, Collater(ref_frames=recipe.data.ref_frames))
    batches.set_epoch(0)
    aligned, predicted = [], []
    for batch in loader:
        _, aln, text_mask = align(model, batch, zero_padding=False, source=alignment)
        styles = torch.cat([model.predictor_encoder(batch.mels[b : b + 1, :, :n].unsqueeze(1))
                            for b, n in enumerate(batch.output_lengths.tolist())])
        d_en = model.plbert.project(model.plbert(batch.texts, attention_mask=(~text_mask).int()))
        logits, _ = model.predictor.predict_durations(d_en, styles, batch.input_lengths, text_mask)
        durations = torch.round(torch.sigmoid(logits).sum(-1)).clamp(min=1)
        for b, n in enumerate(batch.input_lengths.tolist()):
            aligned.append(aln.durations[b, 1 : n - 1].float().numpy())
            predicted.append(durations[b, 1 : n - 1].float().numpy())
    a, p = np.concatenate(aligned), np.concatenate(predicted)
    return {"model": model_path, "manifest": str(manifest), "alignment": alignment, "utterances": len(aligned),
            "tokens": int(a.size), "aligned_mean": float(a.mean()), "aligned_std": float(a.std()),
            "predicted_mean": float(p.mean()), "predicted_std": float(p.std()),
            "l1": float(np.abs(p - a).mean()), "l1_constant": float(np.abs(np.median(a) - a).mean()),
            "correlation": float(np.corrcoef(p, a)[0, 1]) if p.std() > 0 else 0.0,
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a training checkpoint directory (it kept the text aligner)")
    parser.add_argument("--manifest", help="utterances to score (default: the recipe's data.val)")
    parser.add_argument("--alignment", choices=("attention", "ctc"), help="target path (default: the recipe's stage 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from tts_zoo.errors import TTSZooError

    torch.set_num_threads(args.threads)
    try:
        r = run(args.model, args.manifest, args.alignment)
    except TTSZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['model']} · {r['manifest']} · {r['utterances']} utterances, {r['tokens']} tokens · "
          f"alignment {r['alignment']} · {r['seconds']:.1f} s")
    print(f"aligned   mean {r['aligned_mean']:.2f} spread {r['aligned_std']:.2f} frames")
    print(f"predicted mean {r['predicted_mean']:.2f} spread {r['predicted_std']:.2f} frames")
    print(f"L1 {r['l1']:.3f} (best constant {r['l1_constant']:.3f}) · correlation {r['correlation']:.2f}")
    if args.json:
        from tts_zoo.data.manifest import atomic_write_text

        atomic_write_text(args.json, json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
