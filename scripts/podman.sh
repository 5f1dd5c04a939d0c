#!/usr/bin/env bash
# podman with the project's containers.conf (runc, cgroupfs, no default ulimits): see that file.
set -euo pipefail
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/containers/containers.conf}
exec podman "$@"
