#!/usr/bin/env bash
# Run HERE: copy Fashion-MNIST's four gzip files (30 MB) into .device-data/ (ignored by git; name it in
# the device call's carry list). run.sh lays them out where torchvision's FashionMNIST looks, so the
# study prepares the same data set (same sha256) on the GPU machine as here.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=/usr/share/datasets/fashion-mnist
rm -rf .device-data && mkdir -p .device-data
if ls "$src"/*-ubyte.gz >/dev/null 2>&1; then
  cp "$src"/*-ubyte.gz .device-data/
else
  for f in data/raw/FashionMNIST/raw/*-ubyte; do gzip -c "$f" > ".device-data/$(basename "$f").gz"; done
fi
ls -l .device-data
