#!/usr/bin/env bash
# Builds test/pluginwatcher (kubelet's plugin manager on its own, see main.go) and caches it as
#   $CACHE_DIR/bin/pluginwatcher-<k8s version>-<hash of main.go, go.mod, go.sum>
# so that a change to the program builds a new binary and an unchanged one is never rebuilt.
# Builds hold a lock of their own and rename into place (scripts/go-build-cached.sh). Prints the path.
#
#   build.sh                 build if needed, print the path
#   build.sh --print-path    print the path only (builds nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
# shellcheck source=../../scripts/go-build-cached.sh
source "$here/../../scripts/go-build-cached.sh"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
[[ -n "$k8s_version" ]] || { echo "pluginwatcher/build.sh: go.mod does not require k8s.io/kubernetes" >&2; exit 1; }
hash=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
out=$CACHE_DIR/bin/pluginwatcher-$k8s_version-$hash

if [[ "${1:-}" == "--print-path" ]]; then echo "$out"; exit 0; fi
go_build_cached "$here" "$out" pluginwatcher
