#!/usr/bin/env bash
# Evaluate the best DLA60 checkpoint over the whole validation set.
#   DATA_ROOT=./dataset/ILSVRC2012 CKPT=output/DLA60/best_model bash run_test_dla60_best.sh [-o key=value ...]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3 || command -v python)}
DATA_ROOT=${DATA_ROOT:-./dataset/ILSVRC2012}
exec "$PY" tools/eval.py -c "${CONFIG:-configs/ImageNet/DLA/DLA60_best.yaml}" \
    -o Global.pretrained_model="${CKPT:-output/DLA60/best_model}" \
    -o DataLoader.Eval.dataset.image_root="$DATA_ROOT" \
    -o DataLoader.Eval.dataset.cls_label_path="$DATA_ROOT/val_list.txt" \
    ${DEVICE:+-o Global.device=$DEVICE} "$@"
