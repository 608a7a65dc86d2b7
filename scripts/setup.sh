#!/usr/bin/env bash
# Create/refresh the project's virtual environment in .venv (idempotent: a stamp keyed on
# pyproject.toml makes a second run take well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
stamp_key=$( (cat pyproject.toml; $PY --version) | sha256sum | cut -c1-16)
stamp="$VENV/.tts-zoo-setup-$stamp_key"
if [ -f "$stamp" ] && [ -x "$VENV/bin/tts-zoo" ]; then
  exit 0
fi
echo "setting up $VENV (first run: about a minute) ..." >&2
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
# --no-compile: pip would byte-compile every installed module (half of the set-up time, 50 of 100 s
# here); Python compiles the few it imports on first use instead.
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check --no-compile -q "$@" 2>&1 | grep -v "^WARNING: Location" >&2 || true; }
# torch first and pinned: the local CPU wheel; an open range would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[dev,eval]"
"$VENV/bin/python" -c "import torch, tts_zoo, tts_zoo_styletts2" || { echo "setup failed" >&2; exit 1; }
rm -f "$VENV"/.tts-zoo-setup-*
touch "$stamp"
echo "ready: $VENV" >&2
