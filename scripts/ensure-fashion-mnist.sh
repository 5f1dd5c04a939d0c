#!/usr/bin/env bash
# Install Debian's Fashion-MNIST package when it is missing. Where apt is unavailable, kdpipe
# falls back to torchvision's own download at prepare time (needs a network).
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
[ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ] && exit 0
status=0
bash "$(dirname "$0")/apt-install.sh" "Fashion-MNIST" dataset-fashion-mnist || status=$?
if [ "$status" -eq 3 ]; then
  echo "kdpipe will try torchvision's download." >&2
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
