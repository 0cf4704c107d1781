#!/usr/bin/env bash
# The one test command (npm test): brings up the real engines the tests need
# when they are not running, runs every suite, and stops the engines it
# started. The last line is "N passed, N failed"; the exit code is non-zero
# on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

started_engines=0
if ! bash scripts/engines.sh status >/dev/null 2>&1; then
  echo "test: starting the local engines (scripts/engines.sh up)"
  if ! bash scripts/engines.sh up; then
    echo "test: the engines did not come up; see .engines/*/logs"
    echo "0 passed, 1 failed"
    exit 1
  fi
  started_engines=1
fi
set -a
# shellcheck disable=SC1091
. .engines/engines.env
set +a

log=$(mktemp)
npx mocha --reporter ./scripts/summary-reporter.cjs \
  'internal/**/*.test.ts' 'gateway/**/*.test.ts' 'test/**/*.test.ts' "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if [ "$started_engines" = 1 ] && [ "${CHAT_KEEP_ENGINES:-0}" != 1 ]; then
  bash scripts/engines.sh down >/dev/null 2>&1 || true
fi
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
rm -f "$log"
if [ -z "$summary" ]; then
  # mocha died before it could report: that is a failure, never a pass.
  summary="0 passed, 1 failed"
  [ "$status" = 0 ] && status=1
fi
echo "$summary"
exit "$status"
