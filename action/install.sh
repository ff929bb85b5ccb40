#!/usr/bin/env bash
# Install the keeptraining package from this action's folder into a virtual environment,
# reused (runner tool cache) while the action's code and pins are unchanged.
# Prints nothing but errors; writes the venv's bin folder to the step output `bin`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pins (numpy, contourpy...) need the Python that pyproject.toml's requires-python names:
# say so plainly instead of letting pip fail on some package's metadata.
minimum="$(sed -n 's/^requires-python = ">=\([0-9.]*\)"$/\1/p' "$here/pyproject.toml")"
if ! found="$(python3 - "$minimum" <<'PY'
import sys
print(".".join(map(str, sys.version_info[:3])))
sys.exit(sys.version_info[:3] < tuple(int(p) for p in sys.argv[1].split(".")))
PY
)"; then
  echo "::error title=keeptraining needs Python ${minimum} or newer::python3 here is ${found:-missing}." \
    "Add actions/setup-python with python-version: '${minimum}' (or newer) before this action."
  exit 1
fi
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
