#!/usr/bin/env bash
# The whole test suite: bash tests/run_tests.sh [pytest args]   (quick loop: -m "not slow")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
"$PY" -m pip install -q -r requirements.txt -r requirements-test.txt
if ! "$PY" -c "import paddle" 2>/dev/null; then
  "$PY" -m pip install -q "paddlepaddle>=3.0"
fi
exec "$PY" -m pytest -q -p no:cacheprovider --durations=15 "$@"
