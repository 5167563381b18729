#!/usr/bin/env bash
# Runs the official CSI conformance suite, csi-sanity, against cloak's plugin on this kernel
# (which must have dm-crypt: `make sanity` starts this inside the VM tier), once with mount
# volumes and once with block volumes, with real staging and mount directories. The mount pass
# uses the smallest size cloak makes a mounted volume (ext4's 8 MiB: csi-sanity asks for that
# size exactly, with limit_bytes equal to it, so nothing smaller can pass) and an expansion to
# a size that is not a whole number of sectors; the block pass uses ordinary sizes.
#
#   test/sanity/run.sh <csi-sanity binary>
#
# Everything lives in one scratch directory that is removed, with every mount, mapping and
# loop device under it, on any exit.
set -euo pipefail
sanity=${1:?usage: run.sh <csi-sanity binary>}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/cloak-sanity-XXXXXX)
plugin_pid=

cleanup() {
  [[ -n "$plugin_pid" ]] && kill "$plugin_pid" 2>/dev/null && wait "$plugin_pid" 2>/dev/null || true
  # Unmount, close and detach everything below $work (deepest mounts first).
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l || true
  for dm in /sys/block/dm-*; do
    [[ -e "$dm/dm/name" ]] || continue
    name=$(cat "$dm/dm/name")
    [[ $name == cloak-* ]] && cryptsetup close "$name" 2>/dev/null || true
  done
  losetup --list --noheadings --output NAME,BACK-FILE | awk -v w="$work/" 'index($2, w) == 1 {print $1}' | xargs -r -n1 losetup -d || true
  rm -rf "$work"
}
trap cleanup EXIT

# Keys for the file key source: 32 random bytes each, private.
mkdir -m 700 "$work/keys"
for f in master-secret salt; do head -c 32 /dev/urandom >"$work/keys/$f"; chmod 400 "$work/keys/$f"; done

# The guest's tmpfs is small and the volumes are sparse: the accounting may promise more.
node "$root/dist/cmd/cloak.js" csi \
  --endpoint "unix://$work/csi.sock" --node-id sanity-node --key-dir "$work/keys" \
  --volumes-dir "$work/volumes" --allowed-path-root "$work" --overcommit-ratio 8 \
  --log-level "${CLOAK_SANITY_LOG_LEVEL:-warn}" >"$work/plugin.log" 2>&1 &
plugin_pid=$!
for _ in $(seq 1 600); do
  [[ -S "$work/csi.sock" ]] && break
  kill -0 "$plugin_pid" 2>/dev/null || { cat "$work/plugin.log"; echo "sanity: the plugin exited at startup" >&2; exit 1; }
  sleep 0.2
done
[[ -S "$work/csi.sock" ]] || { echo "sanity: the plugin did not create its socket" >&2; exit 1; }

# Specs csi-sanity skips because cloak does not advertise the capability they test, and why it
# does not (README.md, "Conformance" lists them too). Any other skip fails the run: a skipped
# spec is an untested one.
allowed_skips=(
  "ControllerPublishVolume not supported"              # local volumes need no attach step
  "ControllerUnpublishVolume not supported"
  "Controller Publish, UnpublishVolume not supported"
  "ControllerModifyVolume not supported"               # no mutable parameters (VolumeAttributesClass)
  "Modify volume not supported"
  "Modify Volume not supported"
  "GetSnapshot not supported"                          # alpha in CSI 1.12; ListSnapshots serves the same
  "GroupControllerService not supported"               # no volume group snapshots
  "Service does not have single node multi writer capability"  # one writer per node and volume
)

MiB=$((1024 * 1024))
status=0
declare -A volume_size=([mount]=$((8 * MiB)) [block]=$((64 * MiB)))
declare -A expand_size=([mount]=$((24 * MiB + 1)) [block]=$((128 * MiB)))
for access in mount block; do
  echo "==> csi-sanity, $access volumes of ${volume_size[$access]} bytes, expanded to ${expand_size[$access]}"
  rm -rf "$work/staging" "$work/mount"
  if ! "$sanity" \
      -csi.endpoint "unix:$work/csi.sock" \
      -csi.stagingdir "$work/staging" -csi.mountdir "$work/mount" \
      -csi.testvolumesize "${volume_size[$access]}" -csi.testvolumeexpandsize "${expand_size[$access]}" \
      -csi.testvolumeaccesstype "$access" \
      -ginkgo.no-color -ginkgo.v -ginkgo.timeout 60m ${CLOAK_SANITY_ARGS:-} \
      >"$work/sanity-$access.log" 2>&1; then
    status=1
  fi
  grep -E '^(Ran |SUCCESS|FAIL)' "$work/sanity-$access.log" || true
  echo "skipped, by reason:"
  grep -E '^\s*\[SKIPPED\] ' "$work/sanity-$access.log" | grep -v '\[SKIPPED\] in \[' | sed 's/^\s*\[SKIPPED\] //' | sort | uniq -c >"$work/skips-$access"
  cat "$work/skips-$access"
  while read -r _ reason; do
    known=0
    for allowed in "${allowed_skips[@]}"; do [[ "$reason" == "$allowed" ]] && known=1; done
    if [[ $known == 0 ]]; then echo "sanity: a spec was skipped for a reason not on the allowed list: $reason" >&2; status=1; fi
  done <"$work/skips-$access"
  if [[ $status -ne 0 ]]; then
    echo "---- csi-sanity $access log (failures) ----"
    grep -B2 -A30 '\[FAIL\]' "$work/sanity-$access.log" | head -300 || true
    echo "---- plugin log (last 80 lines) ----"
    tail -80 "$work/plugin.log"
    break
  fi
done
exit $status
