#!/usr/bin/env bash
# A real image registry on a loopback port (Debian's docker-registry, the CNCF distribution
# registry 2.8), for image reuse across attempts (`image_registry`): the tests, the benchmark
# and a person trying it. The engine pushes to and pulls from 127.0.0.0/8 registries over
# plain HTTP without any `insecure-registries` setting.
#
#   bash scripts/docker-registry.sh                 # background, prints KT_IMAGE_REGISTRY=127.0.0.1:5055/keeptraining-train
#   bash scripts/docker-registry.sh --port 5611 --storage /tmp/reg --htpasswd FILE --foreground
#
# Options:
#   --port N         loopback port                     (default 5055)
#   --storage DIR    where the registry keeps images   (default /var/tmp/keeptraining-registry-PORT)
#   --htpasswd FILE  require these users (bcrypt htpasswd lines); default: no authentication
#   --read-only      refuse every push (the registry's maintenance read-only mode)
#   --foreground     run in the foreground (the caller owns the process; its log on stderr)
#   --install        only install docker-registry when it is missing, start nothing
#
# Idempotent in the background: a registry already answering on the port is reused.
# docker-registry is installed with apt-get when missing (as root, or through sudo -n).
# Only the final KT_IMAGE_REGISTRY=... line goes to stdout; progress goes to stderr.
set -euo pipefail
exec 3>&1 1>&2

port=5055
storage=""
htpasswd=""
read_only=false
foreground=false
install_only=false
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --storage) storage="$2"; shift 2 ;;
        --htpasswd) htpasswd="$2"; shift 2 ;;
        --read-only) read_only=true; shift ;;
        --foreground) foreground=true; shift ;;
        --install) install_only=true; shift ;;
        *) echo "docker-registry.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
storage="${storage:-/var/tmp/keeptraining-registry-$port}"
address="127.0.0.1:$port"

log() { printf 'docker-registry: %s\n' "$*" >&2; }
die() { printf 'docker-registry: ERROR: %s\n' "$*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "'$*' needs root (run this script as root or with password-less sudo)"
    fi
}
answers() {
    # 200 (open) or 401 (authentication required): a registry is there.
    python3 - "$address" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2)
except urllib.error.HTTPError as exc:
    sys.exit(0 if exc.code == 401 else 1)
except OSError:
    sys.exit(1)
PY
}

if ! command -v docker-registry >/dev/null 2>&1; then
    log "installing docker-registry with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # policy-rc.d-less machines would start the packaged service on :5000; it is not ours to use.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >&2
fi

if $install_only; then
    log "docker-registry: $(command -v docker-registry)"
    exit 0
fi

if ! $foreground && answers; then
    log "a registry answers on $address"
    echo "KT_IMAGE_REGISTRY=$address/keeptraining-train" >&3
    exit 0
fi

mkdir -p "$storage"
config="$storage/config.yml"
{
    echo "version: 0.1"
    echo "log: {level: info, accesslog: {disabled: false}}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $storage/data}"
    echo "  delete: {enabled: true}"
    if $read_only; then echo "  maintenance: {readonly: {enabled: true}}"; fi
    echo "http: {addr: $address}"
    if [ -n "$htpasswd" ]; then echo "auth: {htpasswd: {realm: keeptraining, path: $htpasswd}}"; fi
} > "$config"

if $foreground; then
    exec docker-registry serve "$config" 3>&-
fi

log "starting docker-registry on $address (storage $storage, log $storage/registry.log)"
setsid nohup docker-registry serve "$config" >>"$storage/registry.log" 2>&1 </dev/null 3>&- &
for _ in $(seq 1 50); do
    if answers; then
        echo "KT_IMAGE_REGISTRY=$address/keeptraining-train" >&3
        exit 0
    fi
    sleep 0.2
done
tail -n 20 "$storage/registry.log" >&2 || true
die "docker-registry did not answer on $address within 10 s"
