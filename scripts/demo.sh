#!/usr/bin/env bash
# README's first command: set up and run the main job, the continuous-training loop on the
# bundled sample model (ml_code/nn.py) and its offline data set. Extra arguments go to
# `keeptraining run`, e.g. `bash scripts/demo.sh --threshold 0.95 --backend docker`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/keeptraining run "$@"
