#!/usr/bin/env bash
# The one test command (npm test): brings up the real engines the tests need
# when they are not running, runs every suite, and stops the engines it
# started (only those, also on Ctrl+C or a CI cancel). The last line is
# "N passed, N failed"; the exit code is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

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

log=$(mktemp)
npx mocha --reporter ./scripts/summary-reporter.cjs \
  'internal/**/*.test.ts' 'gateway/**/*.test.ts' 'test/**/*.test.ts' "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

stop_started
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
rm -f "$log"
if [ -z "$summary" ]; then
  # mocha died before it could report: that is a failure, never a pass.
  summary="0 passed, 1 failed"
  [ "$status" = 0 ] && status=1
fi
echo "$summary"
exit "$status"
