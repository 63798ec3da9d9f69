#!/usr/bin/env bash
# Convert an exported model to ONNX (dynamic batch) and check it in onnxruntime.
#   bash deploy/paddle2onnx/convert.sh MODEL_DIR [OPSET]
set -euo pipefail
PY=${PYTHON:-$(command -v python3 || command -v python)}
exec "$PY" "$(dirname "$0")/convert.py" "$1" --opset "${2:-11}"
