#!/usr/bin/env bash
# Local stand-ins for the images that Dockerfile.api, Dockerfile.worker and docker-compose.yml name,
# for machines that cannot pull from Docker Hub (only for those: anywhere else, let Docker pull).
#
#   scripts/local-images.sh            # builds what is missing; FORCE=1 rebuilds everything
#   scripts/local-images.sh --names    # prints the three official names it stands in for
#
# 1. debootstrap a minimal Debian bookworm (plus ca-certificates) from the mirror apt already uses,
#    and `docker import` it as fer-local/bookworm-rootfs;
# 2. build scripts/local-images/*.Dockerfile on it and tag the results with the official names:
#    python:3.11.14-slim-bookworm (Debian's Python 3.11 in a venv at /usr/local, with this machine's
#    CA bundle and pip index settings baked in: local only, never pushed), redis:7.2.11-alpine
#    (Debian's redis-server 7.0) and mher/flower:2.0.1 (flower 2.0.1 on the Python stand-in).
# The names are read from the Dockerfiles and docker-compose.yml, so the stand-ins follow them.
# Every stand-in carries the label fer-batch.stand-in=<the official name it replaces>.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
WORK=${LOCAL_IMAGES_DIR:-build/local-images}
ROOTFS_IMAGE=fer-local/bookworm-rootfs
PYTHON_IMAGE=$(sed -n 's/^FROM[[:space:]]\+//p' Dockerfile.api)
REDIS_IMAGE=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(redis:[^[:space:]]*\).*/\1/p' docker-compose.yml)
FLOWER_IMAGE=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(mher\/flower:[^[:space:]]*\).*/\1/p' docker-compose.yml)
[ "$(sed -n 's/^FROM[[:space:]]\+//p' Dockerfile.worker)" = "$PYTHON_IMAGE" ] || { echo "the Dockerfiles differ in FROM" >&2; exit 1; }
[ -n "$PYTHON_IMAGE" ] && [ -n "$REDIS_IMAGE" ] && [ -n "$FLOWER_IMAGE" ] || { echo "image names not found" >&2; exit 1; }
if [ "${1:-}" = "--names" ]; then
    printf '%s\n' "$PYTHON_IMAGE" "$REDIS_IMAGE" "$FLOWER_IMAGE"
    exit 0
fi

log() { printf '[local-images %s] %s\n' "$(date +%T)" "$*" >&2; }
have() { [ -z "${FORCE:-}" ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
# The legacy builder is enough here (no BuildKit features) and needs no buildx plugin; its output
# goes to $WORK/build.log, shown when a build fails.
build() {
    DOCKER_BUILDKIT=0 "$DOCKER" build "$@" >>"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 1; }
}

# The Debian mirror that apt on this machine uses (read at run time, never written down).
apt_mirror() {
    apt-cache policy 2>/dev/null | awk '$3 ~ /^bookworm\// && $2 ~ /^https?:/ {print $2; exit}'
}

# pip settings for the Python stand-in: this machine's CA bundle, and its index if it sets one.
write_pip_config() {
    local ctx=$1 ca=""
    for candidate in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
        if [ -n "$candidate" ] && [ -f "$candidate" ]; then ca=$candidate; break; fi
    done
    [ -n "$ca" ] || { echo "no CA bundle found" >&2; exit 1; }
    cp "$ca" "$ctx/host-ca.crt"
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/host-ca.crt"
        # index-url, extra-index-url and trusted-host from the environment or pip's own config
        # (only http(s) indexes: file:// ones do not exist inside the image).
        python3 -m pip config list 2>/dev/null | python3 -c '
import re, sys
found = {}
for line in sys.stdin:
    m = re.fullmatch(r"(?:global|:env:)\.(index-url|extra-index-url|trusted-host)=.(.*).", line.strip())
    if m:
        found.setdefault(m[1], []).extend(m[2].split())
for key, values in found.items():
    kept = [v for v in dict.fromkeys(values) if key == "trusted-host" or v.startswith(("http://", "https://"))]
    if kept:
        print(key, "=", " ".join(kept))
'
    } > "$ctx/pip.conf"
}

mkdir -p "$WORK"
ctx=$WORK/context
rm -rf "$ctx" && mkdir -p "$ctx"
cp scripts/local-images/* "$ctx/"

if have "$ROOTFS_IMAGE"; then
    log "$ROOTFS_IMAGE exists"
else
    command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
    mirror=$(apt_mirror)
    [ -n "$mirror" ] || { echo "no Debian bookworm mirror in apt's sources" >&2; exit 1; }
    rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    log "debootstrap bookworm (minbase + ca-certificates)"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "docker import $ROOTFS_IMAGE"
    tar -C "$rootfs" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi

if have "$PYTHON_IMAGE"; then
    log "$PYTHON_IMAGE exists"
else
    write_pip_config "$ctx"
    log "build $PYTHON_IMAGE (stand-in)"
    build -f "$ctx/python.Dockerfile" --build-arg ROOTFS="$ROOTFS_IMAGE" --label "fer-batch.stand-in=$PYTHON_IMAGE" \
        -t fer-local/python "$ctx"
    "$DOCKER" tag fer-local/python "$PYTHON_IMAGE"
fi
rm -f "$ctx/host-ca.crt"

if have "$REDIS_IMAGE"; then
    log "$REDIS_IMAGE exists"
else
    log "build $REDIS_IMAGE (stand-in)"
    build -f "$ctx/redis.Dockerfile" --build-arg ROOTFS="$ROOTFS_IMAGE" --label "fer-batch.stand-in=$REDIS_IMAGE" \
        -t fer-local/redis "$ctx"
    "$DOCKER" tag fer-local/redis "$REDIS_IMAGE"
fi

if have "$FLOWER_IMAGE"; then
    log "$FLOWER_IMAGE exists"
else
    log "build $FLOWER_IMAGE (stand-in)"
    build -f "$ctx/flower.Dockerfile" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --label "fer-batch.stand-in=$FLOWER_IMAGE" \
        -t fer-local/flower "$ctx"
    "$DOCKER" tag fer-local/flower "$FLOWER_IMAGE"
fi
log "ready: $PYTHON_IMAGE, $REDIS_IMAGE, $FLOWER_IMAGE"
