#!/usr/bin/env bash
# Builds the container runtime test/cluster's nodes run, and caches it under $CACHE_DIR:
#   cluster/containerd-<version>/bin/{containerd,containerd-shim-runc-v2,ctr,pause}
#       from the tool module in this directory (containerd finds its shim on PATH, so the
#       names are the ones it looks for)
#   cluster/deb/<package>_<version>/   runc and the CNI plugins (bridge, host-local, loopback),
#       Debian's packages unpacked with dpkg-deb, never installed: the guests see the host's
#       root, so what is in the cache is on their PATH, and nothing changes on this machine
# Cached parts are not rebuilt. Builds hold the shared bin lock and rename into place.
#
#   build.sh                 build what is missing (a no-op when cached)
#   build.sh --print-paths   NAME=PATH lines (CONTAINERD_BIN=..., RUNC=..., CNI_BIN=...)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../scripts/go-env.sh
source "$here/../../../scripts/go-env.sh"
cache=$CACHE_DIR/cluster

containerd_version=$(awk '$1 == "github.com/containerd/containerd/v2" {print $2; exit}' "$here/go.mod")
[[ -n $containerd_version ]] || { echo "build.sh: go.mod does not require containerd" >&2; exit 1; }
containerd_dir=$cache/containerd-$containerd_version
# The Debian packages, at the version this machine's package lists offer (the key of their cache).
debs=(runc containernetworking-plugins)
deb_dir() { # deb_dir PACKAGE
  local version
  version=$(apt-cache policy "$1" | awk '$1 == "Candidate:" {print $2}')
  [[ -n $version && $version != "(none)" ]] || { echo "build.sh: no Debian package $1 (apt-get update?)" >&2; exit 1; }
  echo "$cache/deb/${1}_${version//[^A-Za-z0-9.+-]/_}"
}
runc_dir=$(deb_dir runc)
cni_dir=$(deb_dir containernetworking-plugins)

if [[ ${1:-} == --print-paths ]]; then
  printf 'CONTAINERD_BIN=%s\nRUNC=%s\nCNI_BIN=%s\n' "$containerd_dir/bin" "$runc_dir/usr/sbin/runc" "$cni_dir/usr/lib/cni"
  exit 0
fi

[[ -x $containerd_dir/bin/pause && -x $runc_dir/usr/sbin/runc && -x $cni_dir/usr/lib/cni/bridge ]] && exit 0
mkdir -p "$CACHE_DIR/bin" "$cache/deb"
exec 9>"$CACHE_DIR/bin/.build.lock"
flock 9

if [[ ! -x $containerd_dir/bin/pause ]]; then
  started=$SECONDS
  tmp=$containerd_dir.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp/bin"
  ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    echo "build.sh: building $cmd $containerd_version"
    (cd "$here" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/bin/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd")
  done
  (cd "$here" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/bin/pause" ./pause)
  rm -rf "$containerd_dir" && mv "$tmp" "$containerd_dir"
  echo "build.sh: built containerd $containerd_version in $((SECONDS - started)) s"
fi

for deb in "${debs[@]}"; do
  dir=$(deb_dir "$deb")
  [[ -d $dir ]] && continue
  tmp=$dir.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp/.deb"
  # `_apt` cannot write to a root-only directory: apt warns and downloads as root, as expected.
  (cd "$tmp/.deb" && apt-get download -q "$deb" 2>&1 >/dev/null | { grep -v '^W: Download is performed unsandboxed' >&2 || true; })
  dpkg-deb -x "$tmp"/.deb/*.deb "$tmp"
  rm -rf "$tmp/.deb"
  mv "$tmp" "$dir"
  echo "build.sh: unpacked $(basename "$dir")"
done
