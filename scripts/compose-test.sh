#!/usr/bin/env bash
# `make test-compose`: tests/test_compose.py on a real Docker engine.
#
# 1. An engine: the one already answering on DOCKER_HOST or /var/run/docker.sock, else one started
#    here (root only): `dockerd` from Debian's docker.io, installed with apt when missing, with its
#    log and pidfile in build/docker/; stopped again at the end (an engine found running is left alone).
# 2. Base images: when the ones the Dockerfiles and compose name are not present, scripts/local-images.sh
#    builds local stand-ins under those names (for machines that cannot pull). Nothing is pulled.
# 3. pytest -m compose tests/test_compose.py, with FER_COMPOSE_TEST=1.
#
# When no engine can be had (not root, no apt, dockerd fails to start), it prints why and exits 0:
# the engine-free checks of tests/test_containers.py still ran in `make test`.
# Arguments go to pytest (scripts/compose-test.sh -k flower); KEEP_DOCKERD=1 leaves a dockerd it started running.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
STATE=build/docker
mkdir -p "$STATE"
started_dockerd=""

log() { printf '[test-compose %s] %s\n' "$(date +%T)" "$*" >&2; }
skip() { log "SKIPPED: $*"; exit 0; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

stop_dockerd() {
    [ -n "$started_dockerd" ] && [ -z "${KEEP_DOCKERD:-}" ] || return 0
    local pid
    pid=$(cat "$STATE/dockerd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping the dockerd started here (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
        log "dockerd $pid still running after 30 s"
    fi
}
trap stop_dockerd EXIT

start=$(date +%s)
if engine_answers; then
    log "using the Docker engine already running ($(docker version --format '{{.Server.Version}}'))"
else
    [ "$(id -u)" = 0 ] || skip "no Docker engine answers and starting one needs root"
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        command -v apt-get >/dev/null || skip "no dockerd, and no apt-get to install docker.io"
        log "apt-get install docker.io debootstrap"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap; } \
            >"$STATE/apt.log" 2>&1 || skip "apt-get install docker.io failed (see $STATE/apt.log)"
    fi
    # docker.io's own CLI is /usr/bin/docker; keep whichever `docker` comes first on PATH.
    command -v docker >/dev/null || skip "docker.io installed no docker CLI"
    log "starting dockerd (log $STATE/dockerd.log)"
    dockerd --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do engine_answers && break; sleep 0.5; done
    engine_answers || { tail -20 "$STATE/dockerd.log" >&2; skip "dockerd did not come up within 30 s"; }
    log "dockerd $(docker version --format '{{.Server.Version}}') up after $(( $(date +%s) - start )) s"
fi

# Base images: the ones present (e.g. pulled beforehand: `docker pull python:3.11.14-slim-bookworm`
# ...), else local stand-ins built under their names. Nothing is pulled here.
python_image=$(sed -n 's/^FROM[[:space:]]\+//p' Dockerfile.api)
redis_image=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(redis:[^[:space:]]*\).*/\1/p' docker-compose.yml)
flower_image=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(mher\/flower:[^[:space:]]*\).*/\1/p' docker-compose.yml)
missing=""
for image in "$python_image" "$redis_image" "$flower_image"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing="$missing $image"
done
if [ -n "$missing" ]; then
    command -v debootstrap >/dev/null || skip "missing base images:$missing (pull them, or install debootstrap)"
    log "missing base images:$missing; building local stand-ins (scripts/local-images.sh)"
    scripts/local-images.sh
fi
log "engine and base images ready after $(( $(date +%s) - start )) s"

FER_COMPOSE_TEST=1 "$PYTHON" -m pytest -m compose tests/test_compose.py -v -s -p no:cacheprovider --timeout 900 "$@"
log "done in $(( $(date +%s) - start )) s"
