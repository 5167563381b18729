#!/usr/bin/env bash
# Builds the real CSI sidecars that manifests/ deploys (external-provisioner, external-resizer,
# external-snapshotter, and for the wrapper external-attacher) from the tool module in this directory, and caches each binary as
#   $CACHE_DIR/bin/<name>-<version>      e.g. csi-provisioner-v6.3.0
# A cached binary is not rebuilt. Builds hold the shared bin lock and rename into place, so
# concurrent callers never see a half-written file.
#
#   build.sh                 build what is missing (a no-op when cached)
#   build.sh --print-paths   NAME=PATH lines (CSI_PROVISIONER=..., ...), builds nothing
#   build.sh --regen         after editing the require lines: restate the provisioner's replace
#                            block and tidy (needs the module proxy)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../scripts/go-env.sh
source "$here/../../../scripts/go-env.sh"
bin_dir=$CACHE_DIR/bin

# name | module (as required in go.mod) | package of the command
sidecars=(
  "csi-provisioner|github.com/kubernetes-csi/external-provisioner/v6|cmd/csi-provisioner"
  "csi-resizer|github.com/kubernetes-csi/external-resizer/v2|cmd/csi-resizer"
  "csi-snapshotter|github.com/kubernetes-csi/external-snapshotter/v8|cmd/csi-snapshotter"
  "csi-attacher|github.com/kubernetes-csi/external-attacher/v4|cmd/csi-attacher"
)

version_of() { awk -v m="$1" '$1 == m {print $2; exit}' "$here/go.mod"; }

if [[ "${1:-}" == "--regen" ]]; then
  provisioner=$(version_of github.com/kubernetes-csi/external-provisioner/v6)
  upstream=$(cd "$here" && "$GO" mod download -json "github.com/kubernetes-csi/external-provisioner/v6@$provisioner" |
    sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  {
    sed -n '1,/^replace (/p' "$here/go.mod"
    # Version pins only: the sidecars' local-path replaces (./client) are required by version here.
    sed -n 's/^replace \(k8s\.io\/[^ ]* => k8s\.io\/[^ ]* v[0-9.]*\)$/\t\1/p' "$upstream"
    echo ")"
  } >"$here/go.mod.new"
  mv "$here/go.mod.new" "$here/go.mod"
  (cd "$here" && "$GO" mod tidy)
  exit 0
fi

paths=()
for entry in "${sidecars[@]}"; do
  IFS='|' read -r name module pkg <<<"$entry"
  version=$(version_of "$module")
  [[ -n "$version" ]] || { echo "build.sh: go.mod does not require $module" >&2; exit 1; }
  paths+=("$name|$bin_dir/$name-$version|$module/$pkg")
done

if [[ "${1:-}" == "--print-paths" ]]; then
  for p in "${paths[@]}"; do
    IFS='|' read -r name out _ <<<"$p"
    var=${name^^}
    printf '%s=%s\n' "${var//-/_}" "$out"
  done
  exit 0
fi

missing=0
for p in "${paths[@]}"; do
  IFS='|' read -r _ out _ <<<"$p"
  [[ -x "$out" ]] || missing=1
done
[[ $missing -eq 0 ]] && exit 0

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.build.lock"
flock 9
for p in "${paths[@]}"; do
  IFS='|' read -r name out pkg <<<"$p"
  [[ -x "$out" ]] && continue
  started=$SECONDS
  echo "build.sh: building $pkg -> $out"
  (cd "$here" && "$GO" build -trimpath -ldflags "-s -w -X main.version=$(basename "$out" | sed "s/^$name-//")" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
  echo "build.sh: built $name in $((SECONDS - started)) s"
done
