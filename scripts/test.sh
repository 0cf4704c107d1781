#!/usr/bin/env bash
# The one test command (npm test): brings up the real engines the tests need
# when they are not running, runs every suite, and stops the engines it
# started (only those, also on Ctrl+C or a CI cancel). The last line is
# "N passed, N failed"; the exit code is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

# How many suite files run at once (see below); checked before anything starts.
jobs=${CHAT_TEST_JOBS:-2}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "test: CHAT_TEST_JOBS must be a whole number of 1 or more, got \"$jobs\""
  echo "0 passed, 1 failed"
  exit 2
fi

# Engines this run starts: the ones not running at all when it begins. One already
# running, or still starting under another run, is waited for but never stopped here.
started=()
stop_started() {
  if ((${#started[@]})) && [ "${CHAT_KEEP_ENGINES:-0}" != 1 ]; then
    bash scripts/engines.sh down "${started[@]}" >/dev/null 2>&1 || true
  fi
  started=()
}
log=""
trap 'stop_started; rm -f "$log"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wanted=()
for engine in etcd redis kafka cassandra; do
  if status_out=$(bash scripts/engines.sh status "$engine" 2>/dev/null); then
    continue
  fi
  wanted+=("$engine")
  # PID "-": no process of engines.sh's; otherwise one is starting (someone else's).
  if [ "$(awk -v e="$engine" '$1 == e { print $2 }' <<<"$status_out")" = - ]; then
    started+=("$engine")
  fi
done
if ((${#wanted[@]})); then
  echo "test: starting the local engines (scripts/engines.sh up ${wanted[*]})"
  if ! bash scripts/engines.sh up "${wanted[@]}"; then
    stop_started
    echo "test: the engines did not come up; see ${CHAT_ENGINES_DIR:-.engines}/*/logs"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

# The engines' addresses (written by engines.sh up, where CHAT_ENGINES_DIR says);
# variables already set in the environment win, as the file's header says.
env_file=${CHAT_ENGINES_DIR:-.engines}/engines.env
if [ -f "$env_file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'*) continue ;; esac
    name=${line%%=*}
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    [ -n "${!name+set}" ] && continue
    export "$name=${line#*=}"
  done <"$env_file"
fi

# Most suites wait far more than they compute (grace periods, lease TTLs, engines
# answering, processes starting): half the CPU of a serial run sits idle. So they run
# CHAT_TEST_JOBS files at a time (mocha --parallel, one worker process each), and the
# few files that say "Runs alone" in a comment (they restart a shared engine, which
# every other suite would feel) run afterwards, one by one. Extra arguments go to both.
# Workers take files in this order. The unit and contract suites first: with the system
# suites first, both workers ran those (CPU-bound: processes starting) side by side, and
# the run took 24 minutes rather than 20.
globs=('internal/**/*.test.ts' 'gateway/**/*.test.ts' 'test/**/*.test.ts')
mapfile -t alone < <(grep -rlE '^// Runs alone' --include='*.test.ts' internal gateway test 2>/dev/null | sort)
reporter=(--reporter ./scripts/summary-reporter.cjs)

passed=0
failed=0
status=0
# One mocha run, its output shown as it comes; adds its summary to the totals.
phase() {
  log=$(mktemp)
  npx mocha "$@" 2>&1 | tee "$log"
  local code=${PIPESTATUS[0]}
  local summary p f
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  rm -f "$log"
  log=""
  if [ -z "$summary" ]; then
    # mocha died before it could report: that is a failure, never a pass.
    summary="0 passed, 1 failed"
    [ "$code" = 0 ] && code=1
  fi
  read -r p _ f _ <<<"$summary"
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$code" = 0 ] || status=$code
}

if ((jobs == 1)); then
  phase "${reporter[@]}" "${globs[@]}" "$@"
else
  ignores=()
  for file in "${alone[@]}"; do ignores+=(--ignore "$file"); done
  phase --parallel --jobs "$jobs" "${reporter[@]}" "${globs[@]}" "${ignores[@]}" "$@"
  if ((${#alone[@]})); then
    phase "${reporter[@]}" "${alone[@]}" "$@"
  fi
fi

# A worker mocha ends at the close of the parallel phase takes no children with it:
# a role a suite failed to stop would live on unseen. Role bundles are the tests' own
# (test/support/role-bundle.ts), so any still running is a leak to name.
leaked=$(pgrep -af "$PWD/node_modules/.cache/chat-role-tests/" || true)
if [ -n "$leaked" ]; then
  echo "test: a suite left these processes running:"
  echo "$leaked"
  pkill -9 -f "$PWD/node_modules/.cache/chat-role-tests/" || true
  failed=$((failed + 1))
fi
((failed == 0)) || [ "$status" != 0 ] || status=1

stop_started
echo "$passed passed, $failed failed"
exit "$status"
