#!/usr/bin/env bash
# Writes a node's state disk for test/cluster: an ext4 filesystem image whose containerd/
# directory already holds the given OCI archives imported (content store and unpacked overlayfs
# snapshots, namespace k8s.io), so that no guest has to hash and unpack them on its emulated CPU
# (434 MB of images took a guest 6 minutes; here it takes seconds). Each guest attaches the file
# copy-on-write (qemu snapshot=on): the file is never changed after this script.
#
#   node-disk.sh --out FILE --size SIZE ARCHIVE...
#
# containerd runs here only as an image unpacker: its CRI, its task runtimes and their cgroups
# are disabled, it listens on a socket in a private directory, and it is stopped (and the
# filesystem unmounted) on every exit, failures included. CONTAINERD_BIN: containerd and ctr.
set -euo pipefail

say() { echo "node-disk: $*" >&2; }
die() { say "error: $*"; exit 1; }
out='' size=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[[ -n $out && -n $size && $# -gt 0 ]] || die "usage: node-disk.sh --out FILE --size SIZE ARCHIVE..."
[[ -x ${CONTAINERD_BIN:-}/containerd && -x $CONTAINERD_BIN/ctr ]] || die "CONTAINERD_BIN must hold containerd and ctr"

work=$(mktemp -d /run/cloak-node-disk.XXXXXX)
pid=''
cleanup() {
  set +e
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  mountpoint -q "$work/fs" && umount "$work/fs"
  rm -rf "$work" "$out.tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

truncate -s "$size" "$out.tmp"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$out.tmp"
mkdir -p "$work/fs" "$work/state"
mount -o loop "$out.tmp" "$work/fs"
mkdir -p "$work/fs/containerd"
cat >"$work/config.toml" <<EOF
version = 3
root = "$work/fs/containerd"
state = "$work/state"
disabled_plugins = [
  "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri",
  "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.runtime.v2.task",
  "io.containerd.monitor.task.v1.cgroups", "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
]
[grpc]
  address = "$work/state/containerd.sock"
EOF
"$CONTAINERD_BIN/containerd" --config "$work/config.toml" --log-level warn >"$work/containerd.log" 2>&1 &
pid=$!
ctr=("$CONTAINERD_BIN/ctr" --address "$work/state/containerd.sock" -n k8s.io)
for _ in $(seq 100); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${ctr[@]}" version >/dev/null 2>&1 || { cat "$work/containerd.log" >&2; die "containerd did not start"; }
for archive in "$@"; do
  "${ctr[@]}" images import --platform linux/amd64 --snapshotter overlayfs "$archive" >/dev/null ||
    { cat "$work/containerd.log" >&2; die "importing $archive failed"; }
done
"${ctr[@]}" images list -q >&2
kill "$pid"
wait "$pid" || true
pid=''
umount "$work/fs"
mv "$out.tmp" "$out"
