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
echo "setting up $VENV (first run: about a minute and a half) ..." >&2
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
# --no-compile: pip byte-compiles one file at a time (50 of 100 s of set-up here); compileall below
# does it on every core (25 s). It must be done: where PYTHONDONTWRITEBYTECODE is set (as in many
# containers), Python never caches what it compiles, and every command would compile torch again
# (a model load 16 s instead of 4.6, list-components 0.50 s instead of 0.25).
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check --no-compile -q "$@" 2>&1 | grep -v "^WARNING: Location" >&2 || true; }
# torch first and pinned: the local CPU wheel; an open range would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[dev,eval]"
env -u PYTHONDONTWRITEBYTECODE "$VENV/bin/python" -m compileall -q -j 0 "$VENV"/lib/python*/site-packages tts_zoo plugins >/dev/null || true
"$VENV/bin/python" -c "import torch, tts_zoo, tts_zoo_styletts2" || { echo "setup failed" >&2; exit 1; }
rm -f "$VENV"/.tts-zoo-setup-*
touch "$stamp"
echo "ready: $VENV" >&2
