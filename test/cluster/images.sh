#!/usr/bin/env bash
# Writes the images test/cluster's nodes import (no registry is reachable here) as OCI archives
# (scripts/image/oci-archive.sh) and caches them under $CACHE_DIR/cluster/images/:
#   pause     the sandbox image containerd is configured with (test/cluster/runtime/pause)
#   busybox   Debian's busybox-static with its applets linked, the tests' own pods' image; also
#             named as the e2e suite's busybox, for which it stands in (same applets, not
#             upstream's bytes)
#   csi-provisioner, csi-resizer, csi-snapshotter   the real sidecars test/deploy/sidecars builds
#             at the versions manifests/ pins, one static binary per image, named
#             cloak.invalid/<sidecar>:<version> (test/cluster/overlay points the manifests there)
# cloak's own image is `make image`'s archive (scripts/image/build.sh). File names carry what
# they are built from, so a new input gives a new file.
#
#   images.sh                 write what is missing
#   images.sh --print-paths   PAUSE_IMAGE=FILE, BUSYBOX_IMAGE=FILE, SIDECAR_IMAGES="FILE...",
#                             and the names the first two import as
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-/var/cache/cloak}
out_dir=$CACHE_DIR/cluster/images
oci=$here/../../scripts/image/oci-archive.sh

pause_bin=$(sed -n 's/^CONTAINERD_BIN=//p' < <("$here/runtime/build.sh" --print-paths))/pause
busybox_version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null) ||
  { echo "images.sh: busybox-static is not installed (make deps-apt)" >&2; exit 1; }
pause_name=registry.k8s.io/pause:3.10.1
busybox_names=(cloak.invalid/busybox:test registry.k8s.io/e2e-test-images/busybox:1.37.0-1)
pause_key=$( [[ -x $pause_bin ]] && sha256sum "$pause_bin" | cut -c1-12 || echo missing)
pause_out=$out_dir/pause-$pause_key.oci.tar
busybox_out=$out_dir/busybox-${busybox_version//[^A-Za-z0-9.+-]/_}.oci.tar

# name|binary|archive for each sidecar; the binary's version is the part after "<name>-".
sidecars=()
while IFS='=' read -r _ binary; do
  name=$(basename "$binary") name=${name%-v*}
  sidecars+=("$name|$binary|$out_dir/$(basename "$binary").oci.tar")
done < <("$here/../deploy/sidecars/build.sh" --print-paths | grep -E '^CSI_(PROVISIONER|RESIZER|SNAPSHOTTER)=')
sidecar_files=()
for entry in "${sidecars[@]}"; do sidecar_files+=("${entry##*|}"); done

if [[ ${1:-} == --print-paths ]]; then
  printf 'PAUSE_IMAGE=%s\nPAUSE_NAME=%s\nBUSYBOX_IMAGE=%s\nBUSYBOX_NAME=%s\nSIDECAR_IMAGES=%s\n' \
    "$pause_out" "$pause_name" "$busybox_out" "${busybox_names[0]}" "${sidecar_files[*]}"
  exit 0
fi
[[ -x $pause_bin ]] || { echo "images.sh: no pause binary at $pause_bin (test/cluster/runtime/build.sh)" >&2; exit 1; }
mkdir -p "$out_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -f $pause_out ]]; then
  mkdir -p "$work/pause"
  cp "$pause_bin" "$work/pause/pause"
  "$oci" --out "$work/pause.tar" --name "$pause_name" --entrypoint '["/pause"]' --user 65535:65535 --root-owned "$work/pause" >/dev/null
  mv "$work/pause.tar" "$pause_out"
  echo "images.sh: wrote $pause_out"
fi
if [[ ! -f $busybox_out ]]; then
  mkdir -p "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
  cp /bin/busybox "$work/busybox/bin/busybox"
  # Relative links (`busybox --install` would point them at this work directory).
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$work/busybox/bin/$applet"
  done
  chmod 1777 "$work/busybox/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$work/busybox/etc/passwd"
  echo 'root:x:0:' >"$work/busybox/etc/group"
  names=()
  for n in "${busybox_names[@]}"; do names+=(--name "$n"); done
  "$oci" --out "$work/busybox.tar" "${names[@]}" --cmd '["sh"]' --env PATH=/bin --root-owned "$work/busybox" >/dev/null
  mv "$work/busybox.tar" "$busybox_out"
  echo "images.sh: wrote $busybox_out"
fi
for entry in "${sidecars[@]}"; do
  IFS='|' read -r name binary archive <<<"$entry"
  [[ -f $archive ]] && continue
  [[ -x $binary ]] || { echo "images.sh: no $binary (test/deploy/sidecars/build.sh)" >&2; exit 1; }
  version=$(basename "$binary") version=${version#"$name"-}
  mkdir -p "$work/$name"
  cp "$binary" "$work/$name/$name"
  "$oci" --out "$work/$name.tar" --name "cloak.invalid/$name:$version" --entrypoint "[\"/$name\"]" --root-owned "$work/$name" >/dev/null
  mv "$work/$name.tar" "$archive"
  echo "images.sh: wrote $archive"
done
