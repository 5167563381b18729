#!/usr/bin/env bash
# Runs a command as root on a kernel that has dm-crypt, dm-integrity and WireGuard: this one if
# it has them (native mode), otherwise Debian's stock kernel booted in qemu (VM mode).
#
#   test/vm/run.sh [--mem MB] [--cpus N] [--timeout SECONDS] -- <command> [args...]
#   test/vm/run.sh --shell [-- <command> [args...]]   interactive: a shell (or the command) on
#                                                     the guest's console; Ctrl-A x kills qemu
#   test/vm/run.sh --prepare                          only build the cached kernel and initramfs
#                                                     (make vm-kernel); nothing in native mode
#
# The command runs in the caller's working directory with the caller's PATH, so it finds the
# same node_modules/.bin, Node 24, cryptsetup, wg and Go-built binaries. Its output is streamed
# to this script's stdout, and this script exits with the command's exit status. Harness
# failures exit 125 (the guest crashed, panicked or never reported a status) or 124 (--timeout
# passed); each says why on stderr. This script never exits 0 unless the command reported 0.
#
# Environment:
#   CLOAK_VM=auto|force|never   auto (default) picks native mode when this kernel can; force
#                               always boots the VM (to test the VM path on a capable host);
#                               never refuses to boot it and fails if this kernel cannot.
#   CLOAK_VM_QEMU_ARGS          extra qemu arguments, split on whitespace (no quoting), e.g.
#                               "-netdev user,id=n0 -device virtio-net-pci,netdev=n0".
#   CLOAK_*                     passed through into the guest, as are PATH and CI.
# Inside the guest: CLOAK_IN_VM=1, CLOAK_VM_MODE=vm (native mode: CLOAK_VM_MODE=native),
# HOME=/root, VITEST_CACHE_DIR=/tmp/vitest-cache and NODE_COMPILE_CACHE=/tmp/node-compile-cache;
# all on the guest's tmpfs.
#
# How the VM works (test/vm/README.md has more): the host's / is shared read-only over 9p and
# becomes the guest's root under a tmpfs overlay, so the guest runs the host's programs
# unchanged and can write anywhere without touching the host. A second, writable 9p share (a
# per-run temporary directory) carries the job in, and its output and exit status out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { echo "vm: $*" >&2; }
die() { say "error: $*"; exit 125; }
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 125; }

mem=2048 cpus=2 timeout=1800 shell=0 prepare=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --mem) mem=${2:?--mem needs a size in MB}; shift 2 ;;
    --cpus) cpus=${2:?--cpus needs a count}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --shell) shell=1; shift ;;
    --prepare) prepare=1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done
for n in "$mem" "$cpus" "$timeout"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--mem, --cpus and --timeout take positive integers, not '$n'"
done
if [[ $shell == 1 ]]; then
  [[ -t 0 && -t 1 ]] || die "--shell needs a terminal"
  [[ $# -gt 0 ]] || set -- bash -i
elif [[ $prepare == 0 && $# == 0 ]]; then
  usage
fi
[[ $EUID == 0 ]] || die "must run as root (the tests need root, and qemu serves / over 9p)"

# ---- native or VM ----------------------------------------------------------------------------
# Native mode needs what the VM tests use: dm-crypt and dm-integrity through device-mapper, and
# kernel WireGuard. Loading a module is how to find out whether the kernel has it.
native_missing=()
for module in dm_crypt dm_integrity wireguard; do
  [[ -d /sys/module/$module ]] || modprobe -q "$module" 2>/dev/null || native_missing+=("$module")
done
# /dev/mapper/control can exist without a driver behind it (a stale node made by mknod);
# /proc/misc lists device-mapper only when the driver is there.
[[ -e /dev/mapper/control ]] && grep -qw device-mapper /proc/misc || native_missing+=(device-mapper)

case ${CLOAK_VM:-auto} in
  force)
    mode=vm reason="CLOAK_VM=force" ;;
  never)
    [[ ${#native_missing[@]} == 0 ]] ||
      die "CLOAK_VM=never, but this kernel lacks ${native_missing[*]}: the VM tier cannot run here"
    mode=native reason="CLOAK_VM=never, and this kernel has dm-crypt, dm-integrity and WireGuard" ;;
  auto)
    if [[ ${#native_missing[@]} == 0 ]]; then
      mode=native reason="this kernel has dm-crypt, dm-integrity and WireGuard"
    else
      mode=vm reason="this kernel lacks ${native_missing[*]}"
    fi ;;
  *) die "CLOAK_VM must be auto, force or never, not '$CLOAK_VM'" ;;
esac
say "mode $mode: $reason"

if [[ $mode == native ]]; then
  [[ $prepare == 1 ]] && exit 0
  export CLOAK_VM_MODE=native
  exec "$@"
fi

# ---- VM mode: kernel and initramfs (cached; built on first use) ------------------------------
boot=$("$here/harness/kernel.sh") || die "could not prepare the VM kernel (see above)"
kernel=$(sed -n 's/^KERNEL=//p' <<<"$boot")
initrd=$(sed -n 's/^INITRD=//p' <<<"$boot")
modules=$(sed -n 's/^MODULES=//p' <<<"$boot")
[[ $prepare == 1 ]] && exit 0

# ---- the run share: job in, output and status out --------------------------------------------
rundir=$(mktemp -d /tmp/cloak-vm.XXXXXX)
launcher_pid='' tail_pid=''
# shellcheck disable=SC2317 # (reached only through the trap)
cleanup() {
  # Every exit path, Ctrl-C included: stop qemu (timeout(1) forwards the TERM to it) and the
  # output streamer, then remove the run share. No errexit here: a failed kill or wait must not
  # skip the rest.
  set +e
  if [[ -n $launcher_pid ]]; then
    kill "$launcher_pid" 2>/dev/null
    wait "$launcher_pid" 2>/dev/null
  fi
  if [[ -n $tail_pid ]]; then
    kill "$tail_pid" 2>/dev/null
    wait "$tail_pid" 2>/dev/null
  fi
  rm -rf "$rundir"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM HUP

# The job: a script, because a command line does not fit on the kernel command line (and would
# need quoting there). %q quotes every value so that it reaches the guest byte for byte.
{
  echo "# written by test/vm/run.sh"
  printf 'cd -- %q || { echo "vm: the working directory is not in the guest" >&2; exit 125; }\n' "$PWD"
  printf 'export PATH=%q\n' "$PATH"
  echo "export HOME=/root VITEST_CACHE_DIR=/tmp/vitest-cache CLOAK_IN_VM=1 CLOAK_VM_MODE=vm"
  # Node compiles every module again at each start, which on the emulated CPU dominates the
  # many plugin and netd restarts of the tests; V8's code cache (on the guest's tmpfs, filled
  # by the first start) cuts a start by about 40 % (13.4 s to 8.0 s for netd, measured).
  echo "export NODE_COMPILE_CACHE=/tmp/node-compile-cache"
  for name in $(compgen -e); do
    if [[ $name == CLOAK_* && $name != CLOAK_VM_MODE && $name != CLOAK_IN_VM ]] || [[ $name == CI ]]; then
      printf 'export %s=%q\n' "$name" "${!name}"
    fi
  done
  if [[ $shell == 1 ]]; then
    printf 'export TERM=%q\n' "${TERM:-linux}"
    # The serial console does not know the size of the caller's terminal.
    read -r rows cols < <(stty size) || rows=24 cols=80
    printf 'stty rows %d cols %d\n' "$rows" "$cols"
  fi
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$rundir/job.sh"
[[ $shell == 1 ]] && touch "$rundir/interactive"
: >"$rundir/output"

# ---- qemu ------------------------------------------------------------------------------------
# TCG, not KVM: /dev/kvm exists on these machines but hangs a normal guest.
# quiet: the kernel console goes to console.log (only shown when the guest fails), and
# mitigations=off because a throwaway test guest gains nothing from them but slowness.
# panic=-1 with -no-reboot: a kernel panic ends qemu at once instead of waiting for --timeout.
# The kernel command line is split on spaces: the two paths on it must have none.
[[ $here$modules != *[[:space:]]* ]] || die "the work tree and cache paths must not contain spaces: $here, $modules"
cmdline="console=ttyS0 quiet panic=-1 mitigations=off"
cmdline+=" cloak.init=$here/harness/guest-init.sh cloak.modules=$modules"
qemu=(
  qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$cpus"
  -nodefaults -no-reboot -display none
  -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
  -virtfs "local,path=$rundir,mount_tag=cloakrun,security_model=passthrough"
)
read -ra extra <<<"${CLOAK_VM_QEMU_ARGS:-}"
qemu+=("${extra[@]}")

started=$SECONDS
if [[ $shell == 1 ]]; then
  # The caller's terminal is the guest's serial console; mon: multiplexes qemu's monitor on it
  # (Ctrl-A c), so Ctrl-A x can always kill a stuck guest.
  "${qemu[@]}" -serial mon:stdio || true
  qemu_status=0
else
  timeout --kill-after=10 "$timeout" "${qemu[@]}" -serial "file:$rundir/console.log" </dev/null &
  launcher_pid=$!
  # Stream the job's output while the guest writes it; tail exits once qemu has exited and
  # the rest of the file has been printed.
  tail -n +1 -s 0.2 -f --pid="$launcher_pid" "$rundir/output" &
  tail_pid=$!
  qemu_status=0
  wait "$launcher_pid" || qemu_status=$?
  launcher_pid=
  wait "$tail_pid" || true
  tail_pid=
fi

console_tail() {
  say "last lines of the guest's console:"
  tail -n 40 "$rundir/console.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

if [[ $qemu_status == 124 ]]; then
  say "error: the guest did not finish within ${timeout}s (--timeout); qemu was killed"
  console_tail
  exit 124
fi
if [[ ! -f $rundir/status ]]; then
  say "error: the guest reported no exit status after $((SECONDS - started))s (qemu exited $qemu_status):" \
    "it crashed, panicked, or could not start the command"
  console_tail
  exit 125
fi
status=$(<"$rundir/status")
[[ $status =~ ^[0-9]+$ ]] || die "the guest reported a malformed exit status: '$status'"
if [[ $status != 0 ]]; then
  say "command exited $status in the VM after $((SECONDS - started))s"
  if [[ -s $rundir/dmesg ]]; then
    say "the guest kernel's last messages while it ran:"
    tail -n 15 "$rundir/dmesg" | sed 's/^/  | /' >&2
  fi
fi
exit "$status"
