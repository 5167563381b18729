#!/usr/bin/env bash
# Builds test/pluginwatcher (kubelet's plugin manager on its own, see main.go) and caches it as
#   $CACHE_DIR/bin/pluginwatcher-<k8s version>-<hash of main.go, go.mod, go.sum>
# so that a change to the program builds a new binary and an unchanged one is never rebuilt.
# Builds hold a lock of their own and rename into place, as test/apiserver/build.sh does. Prints the path.
#
#   build.sh                 build if needed, print the path
#   build.sh --print-path    print the path only (builds nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
[[ -n "$k8s_version" ]] || { echo "pluginwatcher/build.sh: go.mod does not require k8s.io/kubernetes" >&2; exit 1; }
hash=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
out=$CACHE_DIR/bin/pluginwatcher-$k8s_version-$hash

if [[ "${1:-}" == "--print-path" ]]; then echo "$out"; exit 0; fi
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$CACHE_DIR/bin"
# Its own lock: the shared one is held for the whole of a kube-controller-manager build.
exec 9>"$CACHE_DIR/bin/.pluginwatcher.lock"
flock 9
if [[ ! -x "$out" ]]; then
  started=$SECONDS
  echo "pluginwatcher/build.sh: building $out" >&2
  (cd "$here" && "$GO" build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" .) >&2
  mv -f "$out.tmp.$$" "$out"
  echo "pluginwatcher/build.sh: built in $((SECONDS - started)) s" >&2
fi
echo "$out"
