#!/bin/bash
# Stage 2 of the VM guest, PID 1 after switch_root: the root is now the host's filesystem (an
# overlay, see initramfs-init), so this is plain bash with the host's tools. It finishes the
# system setup, runs the job that run.sh wrote into the run share, reports the job's exit
# status there and powers off.
#
# The run share (9p tag cloakrun, a per-run temporary directory on the host) holds:
#   job.sh       written by run.sh: cd, environment, the command
#   interactive  present for run.sh --shell: the job gets the serial console as its terminal
#   output       written here: the job's stdout and stderr, which run.sh streams to its caller
#   status       written here, last: the job's exit status. run.sh trusts nothing else: no
#                status file means the guest failed, whatever else happened.
#
# PID 1 must never exit (the kernel would panic), so no `set -e`: every failure is reported
# and ends in power-off.
set -u

share=/run/cloak-vm

power_off() {
  sync
  echo o >/proc/sysrq-trigger
  while :; do sleep 60; done
}

# Messages about the guest itself go to the kernel console (run.sh shows it when no status
# comes back), not into the job's output.
note() { echo "cloak guest: $*" >/dev/console; }

mkdir -p /dev/pts /dev/shm "$share"
# devtmpfs has device nodes only; udev normally adds these links (`wg set ... private-key
# /dev/stdin` and bash's process substitution need them).
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 cloakrun "$share"; then
  note "cannot mount the run share (9p tag cloakrun)"
  power_off
fi

hostname cloak-vm
ip link set lo up

# Loading a module on first use works by itself for most of what the tests touch (wireguard,
# veth, bridge, nf_tables, ext4, xfs, dm-crypt's targets and ciphers): the kernel runs
# /sbin/modprobe. Drivers reached through a device node (loop-control, mapper/control,
# net/tun) are different: the node appears only once the driver is loaded. On a normal system
# systemd creates these "static nodes" at boot from modules.devname so that opening one loads
# its driver; there is no systemd here, so do the same.
# Its lines read "loop loop-control c10:237": module, node under /dev, type and major:minor.
while read -r module node dev; do
  [[ $module == \#* || -e /dev/$node ]] && continue
  mkdir -p "$(dirname "/dev/$node")"
  major=${dev:1} major=${major%%:*}
  mknod -m 600 "/dev/$node" "${dev:0:1}" "$major" "${dev##*:}" || note "cannot create /dev/$node"
done <"/lib/modules/$(uname -r)/modules.devname"
# Devices present at boot get their drivers from udev's coldplug on a normal system. Only
# virtio devices matter here: a NIC added with CLOAK_VM_QEMU_ARGS needs virtio_net.
mapfile -t modaliases < <(cat /sys/bus/virtio/devices/*/modalias 2>/dev/null)
if [[ ${#modaliases[@]} -gt 0 ]]; then
  modprobe -a -q "${modaliases[@]}" || note "loading drivers for virtio devices failed"
fi

# Only the kernel's messages from the job's run are worth showing when it fails: forget the
# boot's (its errors are on the console, which run.sh shows when the guest fails).
dmesg --clear

status=
if [[ -e $share/interactive ]]; then
  # A real terminal with job control for run.sh --shell: setsid -c makes the serial console the
  # shell's controlling terminal, so Ctrl-C and Ctrl-Z reach the guest's programs.
  setsid -c -w bash "$share/job.sh" <>/dev/ttyS0 >&0 2>&0
  status=$?
else
  # Output goes to a file in the run share rather than the serial console: the console may
  # drop bytes and turns \n into \r\n, and a file cannot block the job or keep it alive (a
  # pipe would wait for every leftover background process that still holds it).
  bash "$share/job.sh" </dev/null >"$share/output" 2>&1
  status=$?
fi

# What the kernel said meanwhile helps explain a failing test (dm-crypt, wireguard messages).
dmesg >"$share/dmesg" 2>/dev/null
# Written to a temporary name and renamed, so run.sh never reads half a status.
echo "$status" >"$share/status.tmp" && mv "$share/status.tmp" "$share/status"
sync
umount "$share"
power_off
