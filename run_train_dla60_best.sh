#!/usr/bin/env bash
# Train DLA60 with the reproduction recipe that reached top-1 error 22.334 (configs/ImageNet/DLA/DLA60_best.yaml):
# 4 GPUs x 128 by default.
#   GPUS=0,1,2,3 DATA_ROOT=./dataset/ILSVRC2012 bash run_train_dla60_best.sh [-o key=value ...]
#   DEVICE=cpu NPROC=2 bash run_train_dla60_best.sh      # CPU fallback (2 processes, gloo)
# With another GPU count, scale the lr: -o Optimizer.lr.learning_rate=<0.04 * N / 4>.
set -euo pipefail
cd "$(dirname "$0")"
CONFIG=${CONFIG:-configs/ImageNet/DLA/DLA60_best.yaml}
exec bash tools/launch_train.sh "$CONFIG" "$@"
