#!/usr/bin/env bash
# Quick start on a fresh machine: install, build the demo dataset, train, evaluate, export, convert to
# ONNX, quantize to INT8 and predict. About 5 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3 || command -v python)}
CONFIG=configs/quick_start/DLA46_c_digits.yaml
start=$(date +%s)

echo "== installing requirements"
"$PY" -m pip install -q -r requirements.txt
if ! "$PY" -c "import paddle" 2>/dev/null; then
  echo "== PaddlePaddle not found: installing the CPU wheel (GPU users: pip install paddlepaddle-gpu)"
  "$PY" -m pip install -q "paddlepaddle>=3.0"
fi

echo "== building the demo dataset (scikit-learn's 1797 handwritten digits)"
"$PY" tools/make_demo_dataset.py --out dataset/digits

echo "== training ($CONFIG); VisualDL logs in output/vdl (visualdl --logdir output/vdl)"
"$PY" tools/train.py -c "$CONFIG"

echo "== evaluating the best checkpoint"
"$PY" tools/eval.py -c "$CONFIG" -o Global.pretrained_model=output/DLA46_c/best_model | tee output/quick_start_eval.log

if [ -f tools/export_model.py ]; then
  echo "== exporting the inference model, converting to ONNX, predicting demo images"
  "$PY" tools/export_model.py -c "$CONFIG" -o Global.pretrained_model=output/DLA46_c/best_model \
      -o Global.save_inference_dir=inference/DLA46_c_digits
  bash deploy/paddle2onnx/convert.sh inference/DLA46_c_digits
  "$PY" deploy/python/predict_cls.py -c deploy/configs/inference_cls.yaml \
      -o Global.inference_model_dir=inference/DLA46_c_digits -o Global.infer_imgs=dataset/digits/images/val \
      -o Global.max_images=8 -o PostProcess.Topk.class_id_map_file=dataset/digits/label_list.txt
  if "$PY" -c "import onnxruntime, onnx" 2>/dev/null; then
    echo "== INT8: calibrating on 200 train images, fp32 vs int8 top-1 on the val list, predicting with it"
    "$PY" tools/quantize.py -c "$CONFIG" --model-dir inference/DLA46_c_digits --out inference/DLA46_c_digits_int8 \
        --calib-images 200 | tee output/quick_start_int8.log
    "$PY" deploy/python/predict_cls.py -c deploy/configs/inference_cls.yaml \
        -o Global.inference_model_dir=inference/DLA46_c_digits_int8 -o Global.infer_imgs=dataset/digits/images/val \
        -o Global.max_images=8 -o PostProcess.Topk.class_id_map_file=dataset/digits/label_list.txt
  fi
fi

top1=$(grep -o "top1: [0-9.]*" output/quick_start_eval.log | tail -1 | cut -d' ' -f2)
int8=""
if [ -f output/quick_start_int8.log ]; then int8="; $(tail -1 output/quick_start_int8.log)"; fi
echo "== done in $(( $(date +%s) - start )) s; val top-1: ${top1}${int8}"
