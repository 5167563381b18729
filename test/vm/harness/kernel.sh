#!/usr/bin/env bash
# Prepares what the VM tier boots: Debian's stock kernel with its modules, and a tiny initramfs.
#
#   test/vm/harness/kernel.sh            build what is missing (a fast no-op when cached), then
#                                        print three lines: KERNEL=<vmlinuz> INITRD=<initramfs>
#                                        MODULES=<dir holding lib/modules/<version>>
#
# Why Debian's kernel: it has dm-crypt, dm-integrity, WireGuard, 9p and virtio as modules, it is
# one `apt-get download` away on every machine this project runs on, and nothing gets installed:
# the package is unpacked into the cache, not into the host's /boot and /lib/modules.
#
# Cache layout (outside the work tree, so a fresh clone on the same machine reuses it):
#   $CACHE_DIR/vm/kernel/<version>/boot/vmlinuz-<version>
#   $CACHE_DIR/vm/kernel/<version>/lib/modules/<version>/...      (depmod already run)
#   $CACHE_DIR/vm/kernel/<version>/initramfs-<hash>.cpio.gz      (hash of what goes into it)
# Everything is built in a temporary directory beside its final place and renamed into place
# (rename is atomic), under one flock, so a CI run and a developer's run can start together
# without either seeing a half-built tree.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CACHE_DIR:-/var/cache/cloak}/vm
# The metapackage that always points at the current kernel of this Debian release.
meta=linux-image-amd64

say() { echo "vm-kernel: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The kernel version (e.g. 6.1.0-56-amd64) the metapackage depends on right now.
resolve_version() {
  apt-cache depends "$meta" 2>/dev/null |
    sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*-amd64\)$/\1/p' | head -n1
}

mkdir -p "$cache/kernel"
# One lock for the whole cache, taken before anything may run apt-get update (two at once
# would fail on apt's own lock): building is rare, so finer locks would gain nothing.
exec 9>"$cache/.lock"
flock 9

# apt-cache takes about a second; remember its answer until the package lists change (apt-get
# update rewrites /var/lib/apt/lists, which makes the directory newer than the note).
note=$cache/kernel/version-of-$meta
if [[ -s $note && $note -nt /var/lib/apt/lists ]]; then
  version=$(<"$note")
else
  version=$(resolve_version)
  if [[ -z "$version" ]]; then
    # A fresh machine may have no package lists yet; apt-cache then knows nothing.
    say "apt-cache does not know $meta; running apt-get update"
    apt-get update -qq
    version=$(resolve_version)
  fi
  [[ -n "$version" ]] || die "cannot tell which kernel $meta depends on (apt-cache depends $meta)"
  echo "$version" >"$note.$$" && mv "$note.$$" "$note"
fi

kdir=$cache/kernel/$version
init_script=$here/initramfs-init
busybox=/usr/bin/busybox
# The modules the initramfs loads to reach the host's root over 9p. Everything else (dm-crypt,
# wireguard, ...) is loaded later from the host root, by the kernel's own autoloading or by
# guest-init.sh.
initramfs_modules=(virtio_pci 9pnet_virtio 9p overlay)

[[ -x $busybox ]] || die "$busybox is missing (Debian package busybox-static; run make deps)"

# The uncompressed kernel inside a bzImage, as an ELF file qemu can start directly (PVH entry,
# CONFIG_PVH=y in Debian's kernels). Decompressing the xz payload takes the emulated CPU about
# 2.5 s of every boot; doing it once here takes the host a second. The boot protocol's setup
# header says where the payload is: setup_sects at 0x1f1, payload_offset at 0x248 (relative to
# the protected-mode code, which follows the setup sectors). When the payload is not xz, the
# bzImage boots as it is (kernel_image below).
extract_vmlinux() {
  local bzimage=$1 out=$2 setup_sects payload_offset start
  setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bzimage" | tr -d ' ')
  payload_offset=$(od -An -tu4 -j $((0x248)) -N4 "$bzimage" | tr -d ' ')
  start=$(( (setup_sects + 1) * 512 + payload_offset ))
  if [[ $(od -An -tx1 -j "$start" -N6 "$bzimage" | tr -d ' ') == fd377a585a00 ]]; then
    tail -c +$((start + 1)) "$bzimage" | xz -dc 2>/dev/null >"$out.tmp" || true
    # xz complains about the bytes after its stream; what matters is a complete ELF file.
    if [[ $(od -An -c -N4 "$out.tmp" | tr -d ' ') == 177ELF ]]; then
      mv "$out.tmp" "$out"
      return
    fi
  fi
  rm -f "$out.tmp"
  say "cannot extract an uncompressed kernel from $bzimage; the VM will boot the bzImage (slower)"
}

# ---- the kernel: download, unpack, depmod ----------------------------------------------------
if [[ ! -d $kdir ]]; then
  say "building kernel cache for $version in $kdir"
  tmp=$(mktemp -d "$cache/kernel/.build-$version.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # apt-get download writes into the current directory. `_apt` cannot write to a root-only
  # temp dir, so apt warns and downloads as root: that warning is expected.
  if ! (cd "$tmp" && apt-get download -q "linux-image-$version" 2>&1 | { grep -v '^W: Download is performed unsandboxed' >&2 || true; }); then
    # The package lists can be older than the mirror (the .deb they name is gone): refresh once.
    say "download failed; running apt-get update and retrying"
    apt-get update -qq
    (cd "$tmp" && apt-get download -q "linux-image-$version" 2>&1 | { grep -v '^W: Download is performed unsandboxed' >&2 || true; }) || true
  fi
  deb=$(echo "$tmp"/linux-image-"$version"_*.deb)
  [[ -f $deb ]] || die "apt-get download linux-image-$version produced no .deb"
  dpkg-deb -x "$deb" "$tmp/tree"
  rm -f "$deb"
  [[ -f $tmp/tree/boot/vmlinuz-$version ]] || die "the package has no boot/vmlinuz-$version"
  extract_vmlinux "$tmp/tree/boot/vmlinuz-$version" "$tmp/tree/boot/vmlinux-$version"
  # The package ships no modules.dep (dpkg's postinst would make it): modprobe needs it.
  depmod -b "$tmp/tree" "$version"
  chmod 755 "$tmp/tree"
  mv -T "$tmp/tree" "$kdir"
  rm -rf "$tmp"
  trap - EXIT
fi

# ---- the initramfs ---------------------------------------------------------------------------
# Modules in load order (dependencies first), deduplicated: --show-depends prints a shared
# dependency once per module that needs it.
mapfile -t module_files < <(
  modprobe -a -d "$kdir" -S "$version" --show-depends "${initramfs_modules[@]}" |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
)
[[ ${#module_files[@]} -gt 0 ]] || die "modprobe --show-depends found none of: ${initramfs_modules[*]}"

# Keyed by everything that goes into the image, so editing the init script rebuilds it.
hash=$( { sha256sum "$init_script" "$busybox"; printf '%s\n' "${module_files[@]#"$kdir"}"; } |
  sha256sum | cut -c1-16)
initrd=$kdir/initramfs-$hash.cpio.gz

if [[ ! -f $initrd ]]; then
  say "building initramfs $initrd"
  tmp=$(mktemp -d "$cache/kernel/.initramfs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  root=$tmp/root
  mkdir -p "$root"/{bin,dev,proc,sys,newroot,modules}
  cp "$busybox" "$root/bin/busybox"
  # The init script runs applets by name (mount, insmod, switch_root, ...).
  for applet in $("$busybox" --list); do
    [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
  done
  i=0
  for ko in "${module_files[@]}"; do
    # A numeric prefix keeps the load order that modprobe computed; `ls` sorts by it.
    cp "$ko" "$root/modules/$(printf '%02d' "$i")-$(basename "$ko")"
    i=$((i + 1))
  done
  install -m 755 "$init_script" "$root/init"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$tmp/initrd"
  mv "$tmp/initrd" "$initrd"
  rm -rf "$tmp"
  trap - EXIT
  # Images for older init scripts: unused unless a run started within the last hour still
  # has its path (qemu reads the file only at start).
  find "$kdir" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -path "$initrd" -mmin +60 -delete
fi

kernel_image=$kdir/boot/vmlinux-$version
[[ -f $kernel_image ]] || kernel_image=$kdir/boot/vmlinuz-$version
echo "KERNEL=$kernel_image"
echo "INITRD=$initrd"
echo "MODULES=$kdir/lib/modules"
