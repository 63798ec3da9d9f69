#!/usr/bin/env bash
# The whole test suite: bash tests/run_tests.sh [pytest args]   (quick loop: --quick, the same as -m "not slow")
# Two phases: every test but the speed-ratio ones on one pytest-xdist worker per core (WORKERS=N to
# change, WORKERS=0 for one process), then the tests marked `timing`, alone on the machine.
set -uo pipefail
cd "$(dirname "$0")/.."
ARGS=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then ARGS+=(-m "not slow"); else ARGS+=("$a"); fi
done
set -- ${ARGS[@]+"${ARGS[@]}"}
PY=${PYTHON:-$(command -v python3 || command -v python)}
"$PY" -m pip install -q -r requirements.txt -r requirements-test.txt || exit 1
if ! "$PY" -c "import paddle" 2>/dev/null; then
  "$PY" -m pip install -q "paddlepaddle>=3.0" || exit 1
fi
WORKERS=${WORKERS:-$("$PY" -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")}
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then PARALLEL=(-n "$WORKERS" --dist loadgroup); fi
start=$(date +%s)
"$PY" -m pytest -q -p no:cacheprovider --durations=15 --phase parallel "${PARALLEL[@]}" "$@"
first=$?
"$PY" -m pytest -q -p no:cacheprovider --durations=5 --phase timing "$@"
second=$?
echo "tests/run_tests.sh: $(( $(date +%s) - start )) s (phases: parallel exit $first, timing exit $second)"
# exit 5 is 'no tests collected': a selection (-k, a file) may hold no test of one phase
if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then exit 5; fi
for rc in "$first" "$second"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
done
exit 0
