#!/usr/bin/env bash
# Builds cloak's KMS v2 test plugin (main.go: k8s.io/kms's gRPC service over a PKCS#11 token) and
# caches it as
#   $CACHE_DIR/bin/cloak-kms-plugin-<hash>
# where <hash> covers go.mod, go.sum and the sources: the plugin is cloak's own code, so its
# content is its version. A cached binary is not rebuilt (scripts/go-build-cached.sh: its own
# lock, renamed into place). Prints the path.
# cgo: github.com/miekg/pkcs11 loads the PKCS#11 module (SoftHSM2) with dlopen.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
# shellcheck source=../../scripts/go-build-cached.sh
source "$here/../../scripts/go-build-cached.sh"
export CGO_ENABLED=1
hash=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
go_build_cached "$here" "$CACHE_DIR/bin/cloak-kms-plugin-$hash" kms-plugin
