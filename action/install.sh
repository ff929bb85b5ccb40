#!/usr/bin/env bash
# Install the keeptraining package from this action's folder into a virtual environment,
# reused (runner tool cache) while the action's code and pins are unchanged.
# Prints nothing but errors; writes the venv's bin folder to the step output `bin`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cd "$here" && find pyproject.toml constraints.txt keeptraining -type f ! -name '*.pyc' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
venv="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/keeptraining/$key"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -c "$here/constraints.txt" "$here"
  touch "$venv/.complete"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "bin=$venv/bin" >> "$GITHUB_OUTPUT"
else
  echo "$venv/bin"
fi
