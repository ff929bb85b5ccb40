#!/usr/bin/env bash
# Make a Docker engine and a local Python base image available, for the docker
# backend's tests on a machine where no image can be pulled (see DESIGN.md,
# "How each real part is tested").
#
#   bash scripts/docker-engine.sh            # prints KT_BASE_IMAGE=<name> on stdout
#   base=$(bash scripts/docker-engine.sh | sed -n 's/^KT_BASE_IMAGE=//p')
#
# Idempotent: an engine that already answers (DOCKER_HOST honoured) and a base
# image that already exists are reused. Otherwise, as root (or through sudo -n):
#   - apt-get installs docker.io / debootstrap when they are missing;
#   - dockerd is started in the background (--iptables=false --bridge=none: no
#     network set-up on the machine; builds use the host's network, and without a
#     default bridge `network: default` gives a training container only its
#     loopback, so tests that download use `network: host` or a network they
#     create, which gets a bridge but no way out beyond this host); it outlives
#     this script;
#   - the base image is bootstrapped from the Debian mirror of the machine's own
#     apt sources (debootstrap minbase + python3), with the host's CA bundle
#     copied in because the package index may be reached through TLS
#     interception, then imported with `docker import`.
#
# Only the final KT_BASE_IMAGE=... line goes to stdout; progress goes to stderr.
#
# Environment:
#   KT_BASE_IMAGE       name of the base image      (default keeptraining-base:bookworm)
#   KT_DEBIAN_SUITE     Debian suite to bootstrap   (default bookworm)
#   KT_DEBIAN_MIRROR    Debian mirror URL           (default: read from the apt sources)
#   KT_DOCKERD_LOG      dockerd's log file          (default /var/log/keeptraining-dockerd.log)
#   KT_DOCKERD_WAIT     seconds to wait for dockerd (default 60)
#   DOCKER_HOST         engine to use (a unix:// socket may be started here)
set -euo pipefail

# Keep stdout for the one result line; everything else goes to stderr.
exec 3>&1 1>&2

BASE_IMAGE="${KT_BASE_IMAGE:-keeptraining-base:bookworm}"
SUITE="${KT_DEBIAN_SUITE:-bookworm}"
DOCKERD_LOG="${KT_DOCKERD_LOG:-/var/log/keeptraining-dockerd.log}"
DOCKERD_WAIT="${KT_DOCKERD_WAIT:-60}"
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LOCK_FILE="${TMPDIR:-/tmp}/keeptraining-docker-engine.$(id -u).lock"

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: ERROR: %s\n' "$*" >&2; exit 1; }

# Commands that need root: run directly as root, else through password-less sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "'$*' needs root (run this script as root or with password-less sudo)"
    fi
}

engine_answers() { docker info >/dev/null 2>&1; }

apt_install() {
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Serialise concurrent callers (several test sessions may start at once): the
# second one waits, then finds the engine and image ready.
exec 9>"$LOCK_FILE"
if command -v flock >/dev/null 2>&1; then
    flock -w 1800 9 || die "another docker-engine.sh held $LOCK_FILE for 30 minutes"
fi

# --- 1. the engine --------------------------------------------------------------
ensure_engine() {
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        log "engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock})"
        return
    fi

    # A local daemon can only help when the client looks at a local socket.
    local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
    case "$host" in
        unix://*) ;;
        *) die "DOCKER_HOST=$host does not answer; start that engine, or unset DOCKER_HOST to use a local one" ;;
    esac
    local socket="${host#unix://}"

    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io
    fi

    local pidfile=/var/run/docker.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "dockerd (pid $(cat "$pidfile")) is running but not answering yet; waiting for it"
    else
        log "starting dockerd on $socket (log: $DOCKERD_LOG)"
        as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
        # setsid + nohup: the daemon must survive this script and the test session
        # that ran it; it is left running on purpose for the next caller. It must
        # not inherit fd 3 (the caller's stdout: a $(...) capture would never see
        # EOF) nor fd 9 (the lock: later callers would wait forever).
        as_root setsid nohup dockerd --iptables=false --bridge=none -H "unix://$socket" \
            >>"$DOCKERD_LOG" 2>&1 </dev/null 3>&- 9>&- &
    fi

    local waited=0
    until engine_answers; do
        if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
            log "last lines of $DOCKERD_LOG:"
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer on $socket within ${DOCKERD_WAIT}s (see $DOCKERD_LOG)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "engine answers after ${waited}s"
}

# --- 2. the base image --------------------------------------------------------
# The Debian mirror named in the machine's apt sources (deb822 *.sources files and
# one-line sources.list), preferring one that serves $SUITE. No host name is
# written into the repository: a machine's mirror is whatever it already uses.
debian_mirror() {
    if [ -n "${KT_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$KT_DEBIAN_MIRROR"
        return
    fi
    local files=()
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    # Emit "URI SUITE" pairs from both formats, then pick.
    awk '
        function flush() {
            if (uris != "" && suites != "" && types ~ /(^| )deb( |$)/) {
                n = split(uris, u, " "); m = split(suites, s, " ")
                for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
            }
            uris = ""; suites = ""; types = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[ \t]*#/) next
            if ($1 == "Types:") { types = $0; sub(/^Types:[ \t]*/, "", types) }
            if ($1 == "URIs:") { uris = $0; sub(/^URIs:[ \t]*/, "", uris) }
            if ($1 == "Suites:") { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
            next
        }
        /^[ \t]*deb[ \t]/ {
            line = $0; sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
            split(line, w, /[ \t]+/); print w[1], w[2]
        }
        END { flush() }
    ' "${files[@]}" | awk -v suite="$SUITE" '
        $2 == suite && !exact { exact = $1 }
        $1 ~ /\/debian\/?$/ && !debian { debian = $1 }
        END { if (exact) print exact; else if (debian) print debian }
    '
}

cleanup_rootfs() {
    local rootfs="$1"
    [ -n "$rootfs" ] && [ -d "$rootfs" ] || return 0
    # debootstrap mounts /proc and /sys inside the target; if it failed half-way
    # they may still be mounted: never rm -rf through a mount.
    local m
    while read -r m; do
        as_root umount -l "$m" 2>/dev/null || true
    done < <(awk -v r="$rootfs" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r)
    as_root rm -rf --one-file-system "$rootfs"
}

ensure_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    [ -f "$HOST_CA_BUNDLE" ] || die "no CA bundle at $HOST_CA_BUNDLE to copy into the image"

    local mirror
    mirror="$(debian_mirror)"
    [ -n "$mirror" ] || die "no Debian mirror for '$SUITE' in /etc/apt/sources.list{,.d}; set KT_DEBIAN_MIRROR"

    local rootfs
    rootfs="$(mktemp -d "${KT_ROOTFS_PARENT:-/var/tmp}/keeptraining-rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must clean this rootfs
    trap "cleanup_rootfs '$rootfs'" EXIT

    log "debootstrap $SUITE from $mirror into $rootfs (about a minute)"
    local started=$SECONDS
    as_root debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >&2 \
        || die "debootstrap failed (its log: $rootfs/debootstrap/debootstrap.log)"
    log "debootstrap took $((SECONDS - started))s"

    # The image must trust what the host trusts (TLS interception of the index).
    as_root cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # Smaller image: package caches are not needed at run time.
    as_root find "$rootfs/var/cache/apt/archives" -name '*.deb' -delete
    as_root find "$rootfs/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete

    log "importing $rootfs as $BASE_IMAGE"
    # An imported image has no config: give it the PATH and locale that
    # Dockerfiles written for python:*-slim take for granted.
    as_root tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "keeptraining base: debootstrap --variant=minbase $SUITE + python3" \
        - "$BASE_IMAGE" >/dev/null
    cleanup_rootfs "$rootfs"
    trap - EXIT
    log "base image $BASE_IMAGE ready"
}

ensure_engine
ensure_base_image
echo "KT_BASE_IMAGE=$BASE_IMAGE" >&3
