#!/usr/bin/env bash
# A local stand-in for the Dockerfile's base, python:3.11.7-slim-bookworm, which cannot be pulled
# where only the package registries are reachable: a minimal Debian bookworm with Debian's Python
# 3.11 (python-is-python3 gives it the `python` the Dockerfile calls), imported into podman.
# Prints the image's name; an image already there is kept.
set -euo pipefail
IMAGE=${STAND_IN_BASE:-localhost/kdpipe-base:bookworm-python3.11}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "stand-in base: debootstrap bookworm (minbase) into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$MIRROR" >&2
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python"]' - "$IMAGE" >&2
echo "$IMAGE"
