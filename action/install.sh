#!/usr/bin/env bash
# keeptraining's own Python environment, ready in seconds on a fresh runner.
#
#   install.sh --locate   the environment's cache key and folder (step outputs key, venv, found)
#   install.sh            use the environment if it is there (the runner's tool cache, or restored by
#                         actions/cache from the key), else install it with uv (pinned in
#                         install-tools.txt; pip when uv cannot be had); outputs bin, installed
#
# The key names the action's version (a hash of its code and pins), the Python version and the
# interpreter: one environment per action version and Python, reused on every runner that has it.
# The install step says what it reused. Prints nothing else but errors.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

output() {
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "$1=$2" >> "$GITHUB_OUTPUT"; else echo "$1=$2"; fi
}

# The pins (cryptography, rpds-py, numpy for the search extra...) need the Python that pyproject.toml's requires-python names:
# say so plainly instead of letting pip fail on some package's metadata.
minimum="$(sed -n 's/^requires-python = ">=\([0-9.]*\)"$/\1/p' "$here/pyproject.toml")"
if ! found="$(python3 - "$minimum" <<'PY'
import os, sys
print(".".join(map(str, sys.version_info[:3])), os.path.realpath(sys.executable))
sys.exit(sys.version_info[:3] < tuple(int(p) for p in sys.argv[1].split(".")))
PY
)"; then
  shown="${found%% *}"
  echo "::error title=keeptraining needs Python ${minimum} or newer::python3 here is ${shown:-missing}." \
    "Add actions/setup-python with python-version: '${minimum}' (or newer) before this action."
  exit 1
fi
python_version="${found%% *}"
# Only what the configured chain needs: the search library (the `search` extra, Optuna and its
# SQLAlchemy) only for strategy: search, from the strategy input or else the config file's top-level key
# (the workspace's file: the chain's own commit is checked out later, with the same file in it).
extras=""
config_file="${KT_INPUT_CONFIG:-}"
config_file="${config_file:-.keeptraining.yml}"
if [ "${KT_INPUT_STRATEGY:-}" = "search" ] || { [ -z "${KT_INPUT_STRATEGY:-}" ] && [ -f "$config_file" ] \
    && grep -Eq "^strategy:[[:space:]]*[\"']?search([\"'[:space:]#]|$)" "$config_file"; }; then
  extras="search"
fi
code="$(cd "$here" && { find pyproject.toml constraints.txt install-tools.txt install.sh keeptraining -type f \
  ! -name '*.pyc' -print0 \
  | sort -z | xargs -0 sha256sum; echo "$found"; } | sha256sum | cut -c1-16)"
key="keeptraining-env-${RUNNER_OS:-$(uname -s)}-$(uname -m)-py${python_version}-${code}${extras:+-$extras}"
venv="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/keeptraining/${code}${extras:+-$extras}"
package="$here${extras:+[$extras]}"

if [ "${1:-}" = "--locate" ]; then
  output key "$key"
  output venv "$venv"
  output found "$([ -f "$venv/.complete" ] && echo true || echo false)"
  exit 0
fi

uv_version="$(sed -n 's/^uv==\(.*\)$/\1/p' "$here/install-tools.txt")"
uv_dir="$(dirname "$venv")/uv-${uv_version}"
mkdir -p "$(dirname "$venv")"
# Two jobs may share one tool cache (self-hosted runners on one machine, or act's matrix jobs): one
# installs, the other waits for it here and then reuses what it installed. Held until this script ends.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi
# uv from the package index, pinned; kept beside the environments for the next install here.
ensure_uv() {
  mkdir -p "$(dirname "$uv_dir")"
  if [ ! -x "$uv_dir/bin/uv" ]; then  # into a folder of its own, moved in whole (another job may too)
    local tmp="$uv_dir.tmp.$$"
    python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$tmp" \
      "uv==${uv_version}" >/dev/null 2>&1 && mv -T "$tmp" "$uv_dir" 2>/dev/null || rm -rf "$tmp"
  fi
}

# After the chain's commit is checked out: the train job has no checkout before the action, so the
# config file can only be read now. Adds the extras it asks for to the environment at BIN (once).
if [ "${1:-}" = "--add-extras" ]; then
  bin="${2:?usage: install.sh --add-extras BIN}"
  if [ "$extras" = "search" ] && ! "$bin/python" -c 'import optuna' 2>/dev/null; then
    start=$SECONDS
    ensure_uv
    if [ -x "$uv_dir/bin/uv" ]; then
      "$uv_dir/bin/uv" pip install --quiet --compile-bytecode --python "$bin/python" \
        -c "$here/constraints.txt" "$here[search]"
    else
      python3 -m pip --python "$bin/python" install --quiet --disable-pip-version-check --no-input \
        -c "$here/constraints.txt" "$here[search]"
    fi
    echo "keeptraining's environment: added the search library (the chain's config asks for strategy:" \
      "search) in $((SECONDS - start)) s"
  fi
  exit 0
fi

start=$SECONDS
if [ -f "$venv/.complete" ] && "$venv/bin/python" -c '' 2>/dev/null; then
  if [ "${KT_ENV_RESTORED:-}" = "true" ]; then
    echo "keeptraining's environment: restored from the actions cache (key $key)"
  else
    echo "keeptraining's environment: reused from this runner's tool cache ($venv)"
  fi
  output bin "$venv/bin"
  output installed false
  exit 0
fi

rm -rf "$venv"
ensure_uv
if [ -x "$uv_dir/bin/uv" ]; then
  tool="uv ${uv_version}"
  # --clear: whatever is left at the path goes, and uv never stops to ask (it asks on a terminal).
  "$uv_dir/bin/uv" venv --quiet --clear --python "$(command -v python3)" "$venv" </dev/null
  # Compiled now, once: every runner that restores the environment then starts keeptraining without
  # compiling its imports (PyGithub, cryptography, docker...) first.
  "$uv_dir/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" \
    -c "$here/constraints.txt" "$package"
else
  tool="pip (uv ${uv_version} could not be installed here)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -c "$here/constraints.txt" "$package"
fi
touch "$venv/.complete"
echo "keeptraining's environment${extras:+ (with $extras)}: installed with ${tool} in $((SECONDS - start)) s (nothing to reuse;" \
  "saved for the next runner under the key $key)"
output bin "$venv/bin"
output installed true
