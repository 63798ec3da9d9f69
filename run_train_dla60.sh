#!/usr/bin/env bash
# Train DLA60 with the plain piecewise recipe (configs/ImageNet/DLA/DLA60.yaml), 4 GPUs x 64 by default.
# Same variables as run_train_dla60_best.sh (GPUS, DATA_ROOT, DEVICE=cpu, NPROC).
set -euo pipefail
cd "$(dirname "$0")"
CONFIG=${CONFIG:-configs/ImageNet/DLA/DLA60.yaml} exec bash run_train_dla60_best.sh "$@"
