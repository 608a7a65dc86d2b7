#!/usr/bin/env bash
# The main job on the embedded default: set up, make the espeak-ng demo corpus (nothing to
# download), train the tiny recipe (both StyleTTS 2 stages, on CPU, a few minutes) and speak a
# sentence with the result. Extra arguments go to `tts-zoo train` (e.g. train.max_steps=20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
TTS=.venv/bin/tts-zoo

$TTS prepare demo --out data/demo
$TTS train recipes/demo.yaml "$@"

model=runs/demo/checkpoints/latest
# a held-out recording as the reference voice (manifest paths are relative to the manifest)
reference=$(.venv/bin/python -c "import json, os; a = json.loads(open('data/demo/val.jsonl').readline())['audio']; print(os.path.join('data/demo', a))")
$TTS synthesize --model "$model" --reference "$reference" --seed 0 --out runs/demo/demo.wav \
  --text "This voice was trained a few minutes ago, on a laptop, from espeak recordings."
echo "wrote runs/demo/demo.wav (model: $model)"
