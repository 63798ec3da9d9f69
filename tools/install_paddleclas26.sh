#!/usr/bin/env bash
# PaddleClas 2.6.0 beside this project, to run its own deploy/python/predict_cls.py on an export's inference_cls.yaml:
#   bash tools/install_paddleclas26.sh [VENV]        (default: $PPCLS_PADDLECLAS26_VENV or ~/.cache/ppcls/paddleclas26)
#   VENV/bin/python -m paddleclas.deploy.python.predict_cls -c EXPORT/inference_cls.yaml \
#       -o Global.inference_model_dir=EXPORT -o Global.infer_imgs=IMAGES
# A venv that sees this Python's packages (paddle, numpy 2, opencv, onnxruntime) and adds only paddleclas, with
# --no-deps (its pins would downgrade numpy to 1.24.4 and opencv to 4.6), and faiss-cpu, which `import paddleclas`
# needs. This Python itself gets nothing: PaddleClas's package is `paddleclas` (no top-level `ppcls`), but its console
# script and faiss have no business in this project's environment.
set -euo pipefail
PY=${PYTHON:-$(command -v python3 || command -v python)}
VENV=${1:-${PPCLS_PADDLECLAS26_VENV:-$HOME/.cache/ppcls/paddleclas26}}
check() { "$VENV/bin/python" -c "import paddleclas.deploy.python.predict_cls" >/dev/null 2>&1; }
if [ -x "$VENV/bin/python" ] && check; then
  echo "PaddleClas 2.6.0 already in $VENV"
  exit 0
fi
echo "== PaddleClas 2.6.0 into the venv $VENV (--system-site-packages)"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q "faiss-cpu>=1.8"
"$VENV/bin/python" -m pip install -q --no-deps "paddleclas==2.6.0"  # after faiss: pip then reports no pins
if ! check; then
  "$VENV/bin/python" -c "import paddleclas.deploy.python.predict_cls" >&2 || true
  echo "tools/install_paddleclas26.sh: PaddleClas 2.6.0 in $VENV does not import (see above)" >&2
  exit 1
fi
echo "PaddleClas $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("paddleclas"))') imports in $VENV"
