#!/usr/bin/env bash
# `make image-check`: run the Kubeflow components inside the built image (tests/image, marker `image`),
# through kfp.local's DockerRunner. A Docker daemon serves the Docker API where there is one; without
# one, `podman system service` does, on a socket of its own for this check.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/containers/containers.conf}
    sock_dir=$(mktemp -d)
    podman system service --time=0 "unix://$sock_dir/podman.sock" &
    service=$!
    trap 'kill "$service" 2>/dev/null; rm -rf "$sock_dir"' EXIT
    export DOCKER_HOST="unix://$sock_dir/podman.sock"
    for _ in $(seq 50); do [ -S "$sock_dir/podman.sock" ] && break; sleep 0.2; done
fi
start=$(date +%s)
.venv/bin/python -m pytest -q -m image tests/image "$@"
echo "image check: $(( $(date +%s) - start )) s"
