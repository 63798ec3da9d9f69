#!/usr/bin/env bash
# Mutation testing, not part of CI:  bash tests/mutation.sh [MODULE ...]
#
# Mutates each MODULE (a path under ppcls/, e.g. loss/celoss.py; a quoted glob such as 'arch/convert/*' names
# several files) with mutmut 3 and runs, for each mutant, only the tests that call the mutated function, then
# prints per module: mutants, killed, survived, timeout, no tests, equivalent, score, and each survivor as
# file:line, the change, and its mutmut name. Without MODULE: the small, fast modules listed below.
#
# Install the tool first (it is not in requirements-test.txt):   pip install "mutmut>=3.8,<4"
#
# Settings (environment):
#   MUTATION_BUDGET=600       wall-clock seconds per module; when they run out the module's row counts the
#                             mutants checked so far (the rest are left out, and the script says so)
#   MUTATION_SAMPLE=300       at most this many mutants per module: a seeded sample when a module has more
#   MUTATION_SEED=0           the sample's seed (same seed + same source = same mutants)
#   MUTATION_CORE=<last>      the one CPU core the run is pinned to (taskset), one test process at a time
#   MUTATION_TESTS='...'      pytest arguments replacing the module's test selection (tests/mutation_tool.py TESTS)
#   MUTATION_TIMEOUT_FACTOR=5 a mutant whose tests take this many times their clean CPU time is a timeout
#   MUTATION_KEEP=1           keep the scratch copies (mutants/ inside them; `mutmut show NAME` works there)
#   MUTATION_WORKDIR=DIR      where the scratch copies go (default: a new temp dir, removed at the end)
#
# Each module runs in a scratch copy of the tree, so nothing (mutants/, mutmut-stats) lands in the checkout.
# Score = (killed + timeout) / (mutants - equivalent); tests/mutation_equivalent.txt lists the equivalent
# mutants with the reason. Exit status: 0, or 1 when a module could not be run (its message says why).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$(command -v python3 || command -v python)}
version=$("$PY" -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null)
case "$version" in
  3.*) command -v mutmut >/dev/null || { echo "tests/mutation.sh: the mutmut command is not on PATH" >&2; exit 1; } ;;
  "") echo "tests/mutation.sh: mutmut is not installed: pip install \"mutmut>=3.8,<4\"" >&2; exit 1 ;;
  *) echo "tests/mutation.sh: needs mutmut 3.x, found $version: pip install \"mutmut>=3.8,<4\"" >&2; exit 1 ;;
esac

DEFAULT_MODULES=(loss/celoss.py metric/topk.py serving/inputs.py data/preprocess/batch_ops.py utils/safe_pickle.py)
if [ "$#" -gt 0 ]; then MODULES=("$@"); else MODULES=("${DEFAULT_MODULES[@]}"); fi
BUDGET=${MUTATION_BUDGET:-600}
SAMPLE=${MUTATION_SAMPLE:-300}
SEED=${MUTATION_SEED:-0}
CORE=${MUTATION_CORE:-$("$PY" -c "import os; print(sorted(os.sched_getaffinity(0))[-1])")}
if [ -n "${MUTATION_WORKDIR:-}" ]; then WORK=$MUTATION_WORKDIR; mkdir -p "$WORK"; else WORK=$(mktemp -d -t ppcls-mutation.XXXXXX); fi
if [ -z "${MUTATION_KEEP:-}" ] && [ -z "${MUTATION_WORKDIR:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi
TABLE=$WORK/table.md
: > "$TABLE"
failed=0
start_all=$(date +%s)

for module in "${MODULES[@]}"; do
  slug=$(echo "$module" | tr '/*' '_x')
  copy=$WORK/$slug
  rm -rf "$copy" && mkdir -p "$copy"
  # the working tree as it is (uncommitted edits included), without the history and the big generated folders
  (cd "$ROOT" && tar --exclude=./.git --exclude='*/__pycache__' --exclude='./output*' --exclude=./dataset \
      --exclude=./log --exclude=./inference --exclude=./mutants -cf - .) | (cd "$copy" && tar xf -)
  echo "== $module"
  if ! (cd "$copy" && "$PY" tests/mutation_tool.py config "$module"); then failed=1; continue; fi
  if ! (cd "$copy" && taskset -c "$CORE" "$PY" tests/mutation_tool.py sample "$SAMPLE" "$SEED" "$WORK/$slug.names") \
      > "$WORK/$slug.sample.log" 2>&1; then
    echo "tests/mutation.sh: $module: generating the mutants failed:"; tail -5 "$WORK/$slug.sample.log"; failed=1; continue
  fi
  summary=$(grep '^mutation: [0-9]* mutants' "$WORK/$slug.sample.log")
  echo "$summary"
  total=$(echo "$summary" | awk '{print $2}')
  picked=$(grep -c . "$WORK/$slug.names")
  args=()
  if [ "$picked" -lt "${total:-0}" ]; then mapfile -t args < "$WORK/$slug.names"; fi
  t0=$(date +%s)
  # SIGINT lets mutmut stop its worker and keep the results so far; -k kills it if it does not stop. The run
  # gets a session of its own: processes a mutant's tests started (DataLoader workers) can outlive a killed
  # mutant, and are ended with their group once the run is over
  (cd "$copy" && exec setsid taskset -c "$CORE" timeout -s INT -k 30 "$BUDGET" mutmut run --max-children 1 "${args[@]}") \
      > "$WORK/$slug.log" 2>&1 &
  run=$!
  wait "$run"
  rc=$?
  kill -KILL -- "-$run" 2>/dev/null
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "   time budget ($BUDGET s) ran out: the row counts the mutants checked until then"
  elif [ "$rc" -ne 0 ]; then
    echo "tests/mutation.sh: $module: mutmut run exited $rc; its last lines:"
    tr '\r' '\n' < "$WORK/$slug.log" | grep -v '^ *$' | tail -15
    failed=1
  fi
  echo "   $(( $(date +%s) - t0 )) s"
  (cd "$copy" && "$PY" tests/mutation_tool.py report "$module" "$TABLE") || failed=1
  if [ -z "${MUTATION_KEEP:-}" ]; then rm -rf "$copy"; fi
done

echo
echo "mutation testing: $(( $(date +%s) - start_all )) s, sample $SAMPLE, seed $SEED, budget $BUDGET s per module"
echo "| module | mutants | killed | survived | timeout | no tests | equivalent | score |"
echo "|---|---|---|---|---|---|---|---|"
cat "$TABLE"
if [ -n "${MUTATION_KEEP:-}" ] || [ -n "${MUTATION_WORKDIR:-}" ]; then echo "scratch copies: $WORK"; fi
exit $failed
