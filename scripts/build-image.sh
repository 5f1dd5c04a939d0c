#!/usr/bin/env bash
# `make image`: build the components' image, tagged with the one reference the pipeline uses
# (`kdpipe pipeline image`). With a Docker daemon: a plain `docker build` from python:3.11.7-slim-bookworm.
# Without one: podman (scripts/podman.sh), from a local stand-in of that base (scripts/stand-in-base.sh),
# with this machine's package indexes and CA bundle mounted into the build's RUN steps, so that pip
# inside the build installs the same wheels as here. Prints the build time and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."
REF=$(.venv/bin/kdpipe pipeline image)
start=$(date +%s)
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=(docker)
    docker build --build-arg IMAGE="$REF" -t "$REF" .
else
    command -v podman >/dev/null || { echo "make image: neither a Docker daemon nor podman; run: bash scripts/ensure-podman.sh" >&2; exit 2; }
    engine=(bash scripts/podman.sh)
    base=$(bash scripts/stand-in-base.sh)
    mounts=()
    pip_args=()
    for dir in /opt/wheels /opt/pypi /opt/pypi-more; do  # this machine's wheels (pip.conf's find-links, indexes)
        [ -d "$dir" ] && mounts+=(--volume "$dir:$dir:ro")
    done
    [ -d /opt/wheels ] && pip_args+=(--build-arg PIP_FIND_LINKS=/opt/wheels)
    indexes=$(for d in /opt/pypi /opt/pypi-more; do [ -d "$d/simple" ] && printf 'file://%s/simple ' "$d"; done)
    [ -n "$indexes" ] && pip_args+=(--build-arg "PIP_EXTRA_INDEX_URL=${indexes% }")
    ca=/etc/ssl/certs/ca-certificates.crt
    if [ -f "$ca" ]; then
        mounts+=(--volume "$ca:/etc/kdpipe-build-ca.crt:ro")
        pip_args+=(--build-arg PIP_CERT=/etc/kdpipe-build-ca.crt)
    fi
    "${engine[@]}" build --format docker --build-arg PYTHON_IMAGE="$base" --build-arg IMAGE="$REF" \
        "${pip_args[@]}" "${mounts[@]}" -t "$REF" .
fi
seconds=$(( $(date +%s) - start ))
bytes=$("${engine[@]}" image inspect --format '{{.Size}}' "$REF")
echo "built $REF with ${engine[*]} in ${seconds} s; image size $(( bytes / 1000000 )) MB"
