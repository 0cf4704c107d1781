#!/usr/bin/env bash
# grpcurl for debugging chatd over gRPC with no proto files at hand (chatd
# serves server reflection). Builds it once with `go install` from the Go
# module proxy into .engines/grpcurl/bin (CHAT_ENGINES_DIR overrides
# .engines) and then reuses that binary.
#
#   scripts/grpcurl.sh path            build if missing, print the binary's path
#   scripts/grpcurl.sh [grpcurl args]  build if missing, run grpcurl with the args
#
# e.g. scripts/grpcurl.sh -plaintext 127.0.0.1:8081 list
#
# Needs Go >= 1.25 (grpcurl v1.9.4's go.mod; `go version`), never fetches a
# toolchain. CHAT_GRPCURL_VERSION builds another version.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${CHAT_GRPCURL_VERSION:-v1.9.4}
DIR=${CHAT_ENGINES_DIR:-$ROOT/.engines}/grpcurl
BIN=$DIR/bin/grpcurl
STAMP=$DIR/bin/.version

build() {
  if ! command -v go >/dev/null 2>&1; then
    echo "grpcurl.sh: the go command (Go >= 1.25) is needed to build grpcurl" >&2
    exit 1
  fi
  local minor
  minor=$(go env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')
  if [ -n "$minor" ] && [ "$minor" -lt 25 ]; then
    echo "grpcurl.sh: $(go env GOVERSION) is too old to build grpcurl $VERSION (needs Go >= 1.25)" >&2
    exit 1
  fi
  mkdir -p "$DIR/bin"
  echo "grpcurl.sh: building github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION into $DIR/bin" >&2
  # GOTOOLCHAIN=local: use the Go that is installed, never fetch another one.
  GOBIN="$DIR/bin" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
  echo "$VERSION" >"$STAMP"
}

if [ ! -x "$BIN" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$VERSION" ]; then
  # One build at a time (tests may start in parallel).
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  if [ ! -x "$BIN" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$VERSION" ]; then build; fi
  flock -u 9
fi

if [ "${1:-}" = path ]; then
  echo "$BIN"
  exit 0
fi
exec "$BIN" "$@"
