#!/usr/bin/env bash
# Installs the optional toolkits without breaking this project's numpy 2 / opencv:
#   bash tools/install_extras.sh det    PaddleDetection 2.6.0 (ppcls det ..., tools/det/)
#   bash tools/install_extras.sh seg    PaddleSeg 2.8.0 (ppcls seg ..., tools/seg/)
#   bash tools/install_extras.sh paddlex  PaddleX 3.7.2 (ppcls.paddlex: exports in paddlex.create_model / pipelines)
#   bash tools/install_extras.sh all    all three
# Each toolkit is installed with --no-deps (their declared pins would downgrade numpy to 1.23, PaddleX's to 2.3,
# and replace OpenCV) after what its imports need (requirements-det.txt / requirements-seg.txt /
# requirements-paddlex.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
if [ $# -eq 0 ]; then set -- all; fi
for what in "$@"; do
  case "$what" in
    det) kits=(det) ;;
    seg) kits=(seg) ;;
    paddlex) kits=(paddlex) ;;
    all) kits=(det seg paddlex) ;;
    *) echo "tools/install_extras.sh: unknown extra '$what' (choose det, seg, paddlex or all)" >&2; exit 2 ;;
  esac
  for kit in "${kits[@]}"; do
    case "$kit" in det) pkg="paddledet==2.6.0" ;; seg) pkg="paddleseg==2.8.0" ;; paddlex) pkg="paddlex==3.7.2" ;; esac
    echo "== installing $pkg (its imports' needs from requirements-$kit.txt, then the package with --no-deps)"
    "$PY" -m pip install -q -r "requirements-$kit.txt"
    "$PY" -m pip install -q --no-deps "$pkg"
  done
done
"$PY" - <<'PYEOF'
import importlib.util
for mod, name in (("ppdet", "PaddleDetection"), ("paddleseg", "PaddleSeg"), ("paddlex", "PaddleX")):
    if importlib.util.find_spec(mod) is not None:
        import importlib, numpy
        importlib.import_module(mod)  # fails here, not at the first train, when something is missing
        from importlib.metadata import version
        print(f"{name} {version('paddledet' if mod == 'ppdet' else mod)} imports; numpy {numpy.__version__}")
PYEOF
