#!/usr/bin/env bash
# Builds the block test driver (this directory's Go module) once per source version and caches
# it as
#   $CACHE_DIR/bin/blockdriver-<hash>     (hash of go.mod, go.sum and the .go files)
# Builds hold a lock of their own (a few seconds of work; not worth queueing behind the
# sidecars' builds on the shared lock) and rename into place, so concurrent callers never see
# a half-written binary. Prints the binary's path.
#
#   build.sh                 build if missing, print the path
#   build.sh --print-path    print the path only (builds nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"

hash=$(cd "$here" && cat go.mod go.sum $(ls ./*.go | sort) | sha256sum | cut -c1-16)
out=$CACHE_DIR/bin/blockdriver-$hash
if [[ "${1:-}" == "--print-path" || -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$CACHE_DIR/bin"
exec 9>"$CACHE_DIR/bin/.blockdriver.lock"
flock 9
if [[ ! -x "$out" ]]; then
  started=$SECONDS
  echo "blockdriver/build.sh: building $out" >&2
  (cd "$here" && "$GO" build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" .)
  mv -f "$out.tmp.$$" "$out"
  echo "blockdriver/build.sh: built in $((SECONDS - started)) s" >&2
fi
echo "$out"
