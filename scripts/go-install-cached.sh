#!/usr/bin/env bash
# Builds a Go command with `go install <package>@<version>` once and caches the binary as
#   $CACHE_DIR/bin/<name>-<version>
# (outside the work tree, so a fresh clone on the same machine reuses it). Prints the path.
# Builds hold a lock and rename into place: concurrent callers never see a half-written file.
#
#   scripts/go-install-cached.sh <package> <version> <name>
#   e.g. scripts/go-install-cached.sh github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity v5.6.0 csi-sanity
set -euo pipefail
package=${1:?package}
version=${2:?version}
name=${3:?name}
# shellcheck source=go-env.sh
source "$(dirname "$0")/go-env.sh"
out=$CACHE_DIR/bin/$name-$version
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$CACHE_DIR/bin"
exec 9>"$CACHE_DIR/bin/.build.lock"
flock 9
if [[ ! -x "$out" ]]; then
  tmp=$(mktemp -d "$CACHE_DIR/bin/.go-install-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  started=$SECONDS
  echo "go-install-cached: building $package@$version" >&2
  GOBIN=$tmp "$GO" install -ldflags="-s -w" "$package@$version" >&2
  mv "$tmp/$(basename "$package")" "$out"
  echo "go-install-cached: built $out in $((SECONDS - started)) s" >&2
fi
echo "$out"
