#!/usr/bin/env bash
# README's second command: set up, start what the tests need (a Docker engine and a local base
# image, through scripts/docker-engine.sh; the image registry's package, scripts/docker-registry.sh),
# lint, and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not docker and not e2e"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"

echo "== lint =="
ruff check .
ruff format --check .
mypy
lint-imports  # the package's layers (pyproject.toml, [tool.importlinter])
zizmor --offline --persona pedantic .
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
check-jsonschema --builtin-schema vendor.github-actions action/action.yml action/*/action.yml

echo "== docker engine and base image =="
base_line="$(bash scripts/docker-engine.sh)"
export "${base_line?}"

echo "== image registry (the tests start their own on free ports) =="
bash scripts/docker-registry.sh --install

echo "== tests =="
pytest "$@"
