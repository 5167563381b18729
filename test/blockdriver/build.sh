#!/usr/bin/env bash
# Builds the block test driver (this directory's Go module) once per source version and caches
# it as
#   $CACHE_DIR/bin/blockdriver-<hash>     (hash of go.mod, go.sum and the .go files)
# A cached binary is not rebuilt (scripts/go-build-cached.sh: its own lock, renamed into place,
# so concurrent callers never see half a binary). Prints the binary's path.
#
#   build.sh                 build if missing, print the path
#   build.sh --print-path    print the path only (builds nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
# shellcheck source=../../scripts/go-build-cached.sh
source "$here/../../scripts/go-build-cached.sh"

hash=$(cd "$here" && cat go.mod go.sum $(ls ./*.go | sort) | sha256sum | cut -c1-16)
out=$CACHE_DIR/bin/blockdriver-$hash
if [[ "${1:-}" == "--print-path" ]]; then echo "$out"; exit 0; fi
go_build_cached "$here" "$out" blockdriver
