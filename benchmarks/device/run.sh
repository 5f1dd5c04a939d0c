#!/usr/bin/env bash
# Run ON the lent GPU machine, from the repository root, with .device-wheels and .device-data carried
# (made here by fetch_wheels.sh and stage_data.sh):
#   bash benchmarks/device/run.sh bench           # gpu_step.py, then vs_torchdistill.py on CUDA
#   bash benchmarks/device/run.sh study [ARGS]    # kdpipe study --jobs $JOBS (default 8), tracking off
#   bash benchmarks/device/run.sh all [ARGS]      # both, in that order
# ARGS go to `kdpipe study` (e.g. --seeds 0 1 2, --cells ...). The GPU image has torch, torchvision,
# numpy, pyyaml, tqdm and matplotlib but neither pydantic nor mlflow: the wheels bring pydantic (and
# torchdistill); the study runs with tracking off and is logged to MLflow later, here, by rerunning the
# same `kdpipe study` command on the unpacked results. Everything worth keeping lands in $OUT:
# device.txt, gpu_step.txt/.json, vs_torchdistill.txt, study.log and study.tgz (artifacts/study
# without checkpoints or weights). The study resumes if rerun on the same warm machine.
set -uo pipefail
mode=${1:-all}
shift || true
OUT=${OUT:-/tmp/kdpipe-device-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device-wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, kdpipe.study; print('torch', torch.__version__, 'sees', torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/device.txt" || exit 1

if [ "$mode" = bench ] || [ "$mode" = all ]; then
  timeout "${GPU_STEP_TIMEOUT:-240}" python3 benchmarks/gpu_step.py --json "$OUT/gpu_step.json" 2>&1 | tee "$OUT/gpu_step.txt"
  timeout "${VS_TIMEOUT:-120}" python3 benchmarks/vs_torchdistill.py --device cuda --teacher resnet32x4 --student resnet8x4 \
    --batch-size 256 --steps 10 --repeats 7 --threads 4 2>&1 | tee "$OUT/vs_torchdistill.txt"
fi

if [ "$mode" = study ] || [ "$mode" = all ]; then
  mkdir -p data/raw/FashionMNIST/raw && cp .device-data/*-ubyte.gz data/raw/FashionMNIST/raw/
  timeout "${STUDY_TIMEOUT:-480}" python3 -m kdpipe.cli study -p tracking.enabled=false --jobs "${JOBS:-8}" "$@" 2>&1 \
    | tee "$OUT/study.log"
  tar czf "$OUT/study.tgz" --exclude='*/checkpoints' --exclude='*.pt' artifacts/study
  echo "study: $(find artifacts/study/runs -name result.json | wc -l) finished run(s) in $OUT/study.tgz"
fi
