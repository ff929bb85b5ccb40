#!/usr/bin/env bash
# Create .venv with keeptraining (editable, from action/) and the training requirements.
# `--dev` adds the test and lint tools. Safe to run again: pip skips what is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input)
"${pip[@]}" -r requirements.txt -c action/constraints.txt -e "action[search]"
if [ "${1:-}" = "--dev" ]; then
  "${pip[@]}" -r .ci/requirements-dev.txt
fi
