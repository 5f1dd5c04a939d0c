#!/usr/bin/env bash
# Install Debian's Fashion-MNIST package when it is missing. Where apt is unavailable, kdpipe
# falls back to torchvision's own download at prepare time (needs a network).
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Fashion-MNIST not in $dir and no apt-get here: kdpipe will try torchvision's download." >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing dataset-fashion-mnist with apt-get..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
