#!/usr/bin/env bash
# Run HERE (not on the GPU machine): download, for the lent GPU's Python 3.12 on x86_64, the wheels
# kdpipe needs there beyond what its image has (torch, torchvision, numpy, pyyaml, tqdm, matplotlib
# are there; pydantic is not), plus torchdistill for benchmarks/vs_torchdistill.py. Versions come
# from requirements.lock and requirements-bench.txt, so the device runs the pinned stack.
# Output: .device-wheels/ (ignored by git; name it in the device call's carry list).
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/pip}
pin() { grep -i -E "^$1==" "$2" | head -1; }
lock=requirements.lock
pins=(
  "$(pin pydantic "$lock")"
  "$(pin 'pydantic[_-]core' "$lock")"
  "$(pin annotated-types "$lock")"
  "$(pin typing-inspection "$lock")"
  "$(pin 'typing[_-]extensions' "$lock")"
  "$(pin torchdistill requirements-bench.txt)"
)
for p in "${pins[@]}"; do [ -n "$p" ] || { echo "fetch_wheels: a pin is missing from $lock or requirements-bench.txt" >&2; exit 1; }; done
rm -rf .device-wheels
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device-wheels "${pins[@]}"
ls -l .device-wheels
