#!/usr/bin/env bash
# Under act only: a local stand-in for the artifact that carries the chain state between runs.
# GitHub uses actions/upload-artifact and download-artifact instead; act cannot fetch them.
# State of attempt N of commit C lives in $KT_ACT_STORE/C/attempt-N.
set -euo pipefail
store="${KT_ACT_STORE:-$HOME/.cache/keeptraining-act-store}"
if ! [[ "${KT_STORE_COMMIT:-}" =~ ^[0-9a-f]{7,64}$ ]]; then
  echo "::error title=keeptraining act store::commit is not a hexadecimal commit id"; exit 1
fi
if ! [[ "${KT_STORE_ATTEMPT:-}" =~ ^[0-9]{1,3}$ ]]; then
  echo "::error title=keeptraining act store::attempt is not a whole number"; exit 1
fi
attempt=$((10#$KT_STORE_ATTEMPT))
case "${1:-}" in
  restore)
    src="$store/$KT_STORE_COMMIT/attempt-$((attempt - 1))"
    if [ -d "$src" ]; then
      mkdir -p .keeptraining && cp -a "$src/." .keeptraining/
      echo "Restored the chain state of attempt $((attempt - 1)) from the act store."
    else
      echo "::warning title=keeptraining act store::no stored state for attempt $((attempt - 1))"
    fi ;;
  save)
    dst="$store/$KT_STORE_COMMIT/attempt-$attempt"
    rm -rf "$dst" && mkdir -p "$dst" && cp -a .keeptraining/. "$dst/"
    echo "Saved the chain state of attempt $attempt to the act store." ;;
  *) echo "usage: act_store.sh restore|save" >&2; exit 2 ;;
esac
