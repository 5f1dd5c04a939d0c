#!/usr/bin/env bash
# What `make image` needs where there is no Docker daemon: podman with runc (containers/containers.conf)
# and debootstrap for the stand-in base (scripts/stand-in-base.sh).
set -euo pipefail
command -v docker >/dev/null && docker info >/dev/null 2>&1 && exit 0
command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null && exit 0
bash "$(dirname "$0")/apt-install.sh" "make image" podman runc debootstrap || {
  echo "install Docker, or podman, runc and debootstrap" >&2
  exit 1
}
