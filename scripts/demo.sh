#!/usr/bin/env bash
# The main job on the embedded default, from nothing: set up, make the espeak-ng demo corpus (nothing to
# download) with its F0 labels, train recipes/demo.yaml (text aligner, pitch extractor, StyleTTS 2 stages
# 1 and 2, all from random weights, on CPU), speak a held-out sentence and measure the model with
# Whisper (WER, MCD, F0, durations against espeak-ng). Every step is resumable and skipped when done:
# run it again after an interruption. Extra arguments go to `tts-zoo train` (e.g. train.max_steps=20).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
TTS=.venv/bin/tts-zoo
RUN=runs/demo

step() { echo; echo "== $1 ($(( $(date +%s) - start )) s so far)"; }

step "1/4 demo corpus: 800 sentences in one espeak-ng voice, F0 labels (cached after the first run)"
$TTS prepare demo --out data/demo --speakers us_m --utterances 800 --f0 dsp_pitch --quiet

step "2/4 training recipes/demo.yaml: aligner → pitch extractor → stage 1 → stage 2 (resumes where it stopped)"
$TTS train recipes/demo.yaml --no-progress "$@"

model=$RUN/checkpoints/latest
step "3/4 speaking a sentence that is not in the training text"
# the voice: a held-out recording of the same espeak-ng voice (manifest paths are relative to the manifest)
reference=$(.venv/bin/python -c "import json, os; a = json.loads(open('data/demo/val.jsonl').readline())['audio']; print(os.path.join('data/demo', a))")
$TTS synthesize --model "$model" --reference "$reference" --seed 0 --out $RUN/demo.wav --dump $RUN/dump \
  --text "The old man walked his dog along the river every morning."

step "4/4 evaluation: Whisper-base WER, MCD-DTW, F0 and duration ratio against espeak-ng (20 held-out sentences)"
$TTS evaluate --model "$model" --reference "$reference" --voice us_m --out $RUN/eval

echo
echo "done in $(( $(date +%s) - start )) s"
echo "  audio:        $RUN/demo.wav   (and $RUN/eval/model/*.wav beside espeak-ng's $RUN/eval/espeak/*.wav)"
echo "  plots:        $RUN/dump/ (alignment, F0, durations of demo.wav)"
echo "  evaluation:   $RUN/eval/eval.json"
echo "  training log: $RUN/metrics.jsonl, tensorboard --logdir $RUN/tensorboard"
echo "  model:        $model"
