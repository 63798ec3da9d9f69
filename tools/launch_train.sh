#!/usr/bin/env bash
# tools/launch_train.sh CONFIG [-o key=value ...]: data-parallel training with paddle.distributed.launch.
#   GPUS=0,1,2,3 (default) on GPUs; DEVICE=cpu NPROC=2 on CPU; DATA_ROOT sets the ImageNet-style root.
set -euo pipefail
PY=${PYTHON:-$(command -v python3 || command -v python)}
CONFIG=$1; shift
DATA_ROOT=${DATA_ROOT:-./dataset/ILSVRC2012}
DATA=(-o DataLoader.Train.dataset.image_root="$DATA_ROOT" -o DataLoader.Train.dataset.cls_label_path="$DATA_ROOT/train_list.txt"
      -o DataLoader.Eval.dataset.image_root="$DATA_ROOT" -o DataLoader.Eval.dataset.cls_label_path="$DATA_ROOT/val_list.txt")
if [ "${DEVICE:-gpu}" = "cpu" ]; then
  exec "$PY" -m paddle.distributed.launch --nproc_per_node "${NPROC:-2}" --log_dir "${LOG_DIR:-log}" \
      tools/train.py -c "$CONFIG" -o Global.device=cpu "${DATA[@]}" "$@"
fi
GPUS=${GPUS:-0,1,2,3}
export CUDA_VISIBLE_DEVICES=$GPUS
exec "$PY" -m paddle.distributed.launch --gpus="$GPUS" --log_dir "${LOG_DIR:-log}" \
    tools/train.py -c "$CONFIG" "${DATA[@]}" "$@"
