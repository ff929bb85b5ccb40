#!/usr/bin/env bash
# README's first command: set up and run the main job, the continuous-training loop on the
# bundled sample model (ml_code/nn.py) and its offline data set. Extra arguments go to
# `keeptraining run`, e.g. `bash scripts/demo.sh --threshold 0.95 --backend local`.
#
# Backend: Docker when an engine answers, else this machine's Python (keeptraining says which).
# Where no image can be pulled, the Dockerfile's BASE_IMAGE comes from KT_BASE_IMAGE, or from
# the local base image that scripts/docker-engine.sh builds, when it exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
base="${KT_BASE_IMAGE:-}"
if [ -z "$base" ] && docker image inspect keeptraining-base:bookworm >/dev/null 2>&1; then
  base=keeptraining-base:bookworm
fi
args=()
if [ -n "$base" ]; then
  args+=(--base-image "$base")
fi
exec .venv/bin/keeptraining run "${args[@]}" "$@"
