#!/usr/bin/env bash
# Builds cloak's KMS v2 test plugin (main.go: k8s.io/kms's gRPC service over a PKCS#11 token) and
# caches it as
#   $CACHE_DIR/bin/cloak-kms-plugin-<hash>
# where <hash> covers go.mod, go.sum and the sources: the plugin is cloak's own code, so its
# content is its version. A cached binary is not rebuilt; builds hold the bin directory's lock
# and rename into place, so concurrent callers never see half a binary. Prints the path.
# cgo: github.com/miekg/pkcs11 loads the PKCS#11 module (SoftHSM2) with dlopen.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
export CGO_ENABLED=1
hash=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
out=$CACHE_DIR/bin/cloak-kms-plugin-$hash
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$CACHE_DIR/bin"
exec 9>"$CACHE_DIR/bin/.build.lock"
flock 9
if [[ ! -x "$out" ]]; then
  started=$SECONDS
  echo "kms-plugin/build.sh: building $out" >&2
  (cd "$here" && "$GO" build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" .) >&2
  mv -f "$out.tmp.$$" "$out"
  echo "kms-plugin/build.sh: built $(basename "$out") in $((SECONDS - started)) s" >&2
fi
echo "$out"
