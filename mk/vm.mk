# The VM tier's machine (test/vm/, see test/vm/README.md): Debian's stock kernel and a tiny
# initramfs, booted in qemu by test/vm/run.sh when this host's kernel lacks dm-crypt or
# WireGuard. Both are cached under $(CACHE_DIR)/vm, keyed by kernel version, outside the work
# tree; building them takes seconds and needs only Debian's apt.

# qemu and the initramfs (busybox, cpio, kmod for depmod/modprobe, xz to unpack the kernel
# once so that the emulated CPU does not have to at every boot), plus what the VM tier's
# smoke test runs inside the guest.
APT_PACKAGES += qemu-system-x86 busybox-static cpio kmod xz-utils \
	cryptsetup-bin e2fsprogs iproute2 wireguard-tools

.PHONY: vm-kernel
# Idempotent: a fast no-op when the cache is complete; nothing at all in native mode.
vm-kernel: deps-apt
	test/vm/run.sh --prepare
