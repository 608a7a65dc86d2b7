"""Peak memory (RSS) of a synthesis process at the official widths: load a checkpoint, speak.

    .venv/bin/python benchmarks/memory.py [--decoders istftnet hifigan] [--threads 1] [--keep DIR]

Models: the model blocks of ``recipes/libritts_istft.yaml`` / ``recipes/libritts_hifigan.yaml``
(official widths) at random weights, built as ``benchmarks/inference.py`` builds them (training-only
modules dropped) and saved once as tts-zoo checkpoints in a temporary directory. Then, per decoder, a
fresh interpreter does what a user's synthesis process does and reports its peak resident memory so
far (the kernel's ``VmHWM``, Linux) after each phase:

1. ``import``: torch, tts_zoo and the plugin imported (the floor every process pays);
   ``+plbert``: PL-BERT's module, i.e. transformers' ALBERT, which building the model imports anyway;
2. ``load``: ``Synthesizer(checkpoint)`` (read the checkpoint, build, load the weights, fold weight norm);
3. ``synthesize``: ``model.synthesize`` on the fixtures' fixed sentence at its fixed durations
   (156 tokens, 6.80 s of audio, 5 diffusion steps), as in ``benchmarks/inference.py``.

The goal (issue 13): peak ≤ 1.0 GiB. The weights' own size is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30

# Runs in a fresh interpreter: argv = checkpoint directory, fixtures file. Prints one JSON line.
# Peak = the kernel's VmHWM of this process. Not ru_maxrss: Linux carries the parent's peak into a
# forked child's ru_maxrss across exec, so a child of a big process reports the parent's size.
_MEASURE = r"""
import json, sys, time
def status(key):  # bytes, from /proc/self/status (kB there)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
def mark():
    return status("VmHWM"), status("VmRSS")
out = {}
import torch, tts_zoo_styletts2
from tts_zoo.synthesize import Synthesizer
out["import"] = mark()
import tts_zoo_styletts2.plbert  # what building PL-BERT imports (transformers' ALBERT)
out["plbert_import"] = mark()
t0 = time.perf_counter()
synth = Synthesizer(sys.argv[1], device="cpu")
out["load_s"] = time.perf_counter() - t0
out["load"] = mark()
model = synth.model
out["weights"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
fx = torch.load(sys.argv[2], weights_only=True)["infer_fixed"]
style = torch.randn(1, model.style_size, generator=torch.Generator().manual_seed(1)) * 0.1
wave = model.synthesize(fx["tokens"], style, alpha=0.3, beta=0.7, diffusion_steps=5, durations=fx["pred_dur"],
                        generator=torch.Generator().manual_seed(0), decoder_seed=0)
out["samples"] = wave.numel()
out["synthesize"] = mark()
print(json.dumps(out))
"""


def save_models(decoders: list[str], directory: Path) -> None:
    """Build each decoder's model (random weights, inference block) and save it as a checkpoint."""
    sys.path.insert(0, str(REPO))
    from benchmarks.inference import RECIPES, build
    from tts_zoo.checkpoint import save_model
    from tts_zoo.recipe import load_recipe

    for decoder in decoders:
        if (directory / decoder / "model.safetensors").is_file():
            continue
        model = build(decoder)
        recipe = load_recipe(REPO / RECIPES[decoder])
        recipe = recipe.model_copy(update={"model": type(model).inference_block(recipe.model)})
        save_model(directory / decoder, model, recipe)
        del model


def measure(checkpoint: Path, threads: int) -> dict:
    from tests.styletts2.reference import FIXTURES

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(checkpoint), str(FIXTURES / "tiny_hifigan" / "fixtures.pt")],
                       cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"measurement failed for {checkpoint}:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", nargs="+", default=["istftnet", "hifigan"], choices=["istftnet", "hifigan"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the checkpoints here (and reuse them on the next run)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        save_models(args.decoders, directory)
        print(f"peak RSS so far of a synthesis process (GiB; current RSS in brackets), {args.threads} thread(s), goal <= 1.0")
        for decoder in args.decoders:
            m = measure(directory / decoder, args.threads)
            phases = "  ".join(f"{p.replace('plbert_import', '+plbert')} {m[p][0] / GIB:.2f} ({m[p][1] / GIB:.2f})" for p in ("import", "plbert_import", "load", "synthesize"))
            print(f"{decoder:9s} weights {m['weights'] / GIB:.2f}  {phases}  load {m['load_s']:.1f} s, "
                  f"{m['samples'] / 24000:.2f} s of audio")


if __name__ == "__main__":
    main()
