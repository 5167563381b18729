#!/usr/bin/env bash
# csi-sanity for the wrapper (csi/wrap/), against real processes on real loop devices:
#
#   test/sanity/wrap.sh driver <csi-sanity> <blockdriver> [PROFILE...]
#       the block test driver alone (test/blockdriver), block volumes: proof that it is a
#       conforming CSI driver, not a mock shaped to cloak. Loop devices only: runs on the host.
#   test/sanity/wrap.sh cloak <csi-sanity> <blockdriver> [PROFILE...]
#       cloak in wrapper mode in front of it — a node process and a controller process, as
#       deployed — with mount and with block volumes. Needs dm-crypt: `make sanity-wrap` runs it
#       in the VM tier.
#
# PROFILE is bind, mapped, attach or nostage (test/blockdriver/README.md); default: all four
# for `driver`, bind and attach for `cloak`. Profiles run at the same time, each with its own
# processes and directories (CLOAK_SANITY_SERIAL=1: one after the other). Everything lives in
# one scratch directory that is removed, with every process, mount, mapping and loop device
# under it, on any exit.
set -euo pipefail
target=${1:?usage: wrap.sh driver|cloak <csi-sanity> <blockdriver> [PROFILE...]}
sanity=${2:?csi-sanity binary}
blockdriver=${3:?blockdriver binary}
shift 3
profiles=("$@")
case $target in
  driver) [[ ${#profiles[@]} -gt 0 ]] || profiles=(bind mapped attach nostage); accesses=(block) ;;
  cloak) [[ ${#profiles[@]} -gt 0 ]] || profiles=(bind attach); accesses=(mount block) ;;
  *) echo "wrap.sh: the target is driver or cloak, not $target" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/cloak-sanity-wrap-XXXXXX)
: >"$work/pids"

cleanup() {
  set +e
  # Every process any profile started (they append their pids here), then what they left.
  while read -r pid; do kill "$pid" 2>/dev/null; done <"$work/pids"
  while read -r pid; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done <"$work/pids"
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  for dm in /sys/block/dm-*; do
    [[ -e "$dm/dm/name" ]] || continue
    for slave in "$dm"/slaves/loop*; do
      [[ -e $slave/loop/backing_file ]] || continue
      [[ $(cat "$slave/loop/backing_file") == "$work/"* ]] && cryptsetup close "$(cat "$dm/dm/name")" 2>/dev/null
    done
  done
  losetup --list --noheadings --output NAME,BACK-FILE | awk -v w="$work/" 'index($2, w) == 1 {print $1}' | xargs -r -n1 losetup -d
  rm -rf "$work"
}
trap cleanup EXIT

wait_for_socket() { # wait_for_socket <socket> <pid> <log>
  for _ in $(seq 1 1500); do
    [[ -S $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3"; echo "sanity: $(basename "$3" .log) exited at startup" >&2; return 1; }
    sleep 0.2
  done
  echo "sanity: $(basename "$3" .log) did not create $1" >&2
  return 1
}

# Skips csi-sanity makes because a capability is not advertised, allowed with the reason why
# it is not (test/sanity/run.sh has the local source's list; README.md, "Conformance").
allowed_skips=(
  "ControllerModifyVolume not supported"               # no mutable parameters
  "Modify volume not supported"
  "Modify Volume not supported"
  "GetSnapshot not supported"                          # alpha in CSI 1.12; ListSnapshots serves the same
  "GroupControllerService not supported"               # no volume group snapshots
  "Service does not have single node multi writer capability"  # one writer per node and volume
)
publish_skips=(
  "ControllerPublishVolume not supported"              # profiles that need no attach step
  "ControllerUnpublishVolume not supported"
  "Controller Publish, UnpublishVolume not supported"
)

if [[ $target == cloak ]]; then
  mkdir -m 700 "$work/keys"
  for f in master-secret salt; do head -c 32 /dev/urandom >"$work/keys/$f"; chmod 400 "$work/keys/$f"; done
fi

MiB=$((1024 * 1024))

# One profile: its driver (and cloak's two processes), then csi-sanity for each access type.
# Prints its report to stdout; exits non-zero when a spec failed or was skipped unexpectedly.
run_profile() {
  local profile=$1 run=$work/$1
  local kubelet=$run/kubelet
  mkdir -p "$kubelet" "$run/state"
  "$blockdriver" --endpoint "unix://$run/inner.sock" --node-id sanity-node --state-dir "$run/state" \
    --driver-name block.test.cloak.dev --profile "$profile" >"$run/blockdriver.log" 2>&1 &
  echo $! >>"$work/pids"
  wait_for_socket "$run/inner.sock" $! "$run/blockdriver.log"
  local node=$run/inner.sock controller=$run/inner.sock
  if [[ $target == cloak ]]; then
    local service keys
    for service in node controller; do
      keys=()
      [[ $service == node ]] && keys=(--key-dir "$work/keys")
      node "$root/dist/cmd/cloak.js" csi --wrap "unix://$run/inner.sock" --services "$service" \
        --driver-name wrapped.cloak.dev --endpoint "unix://$run/cloak-$service.sock" "${keys[@]}" \
        --allowed-path-root "$kubelet" --inner-root "$kubelet/plugins/kubernetes.io/csi/wrapped.cloak.dev/inner" \
        --log-level "${CLOAK_SANITY_LOG_LEVEL:-warn}" >"$run/cloak-$service.log" 2>&1 &
      echo $! >>"$work/pids"
      wait_for_socket "$run/cloak-$service.sock" $! "$run/cloak-$service.log"
    done
    node=$run/cloak-node.sock controller=$run/cloak-controller.sock
  fi
  local skips=("${allowed_skips[@]}") extra=()
  # With an attach step, also the attach limit (NodeGetInfo's max_volumes_per_node, which the
  # driver enforces at ControllerPublish and cloak passes through).
  if [[ $profile == attach ]]; then extra+=(-csi.testnodevolumeattachlimit); else skips+=("${publish_skips[@]}"); fi
  # cloak always stages; the driver alone without STAGE_UNSTAGE has nothing to stage.
  [[ $target == driver && $profile == nostage ]] && skips+=("NodeStageVolume not supported" "NodeUnstageVolume not supported")

  local access status=0
  for access in "${accesses[@]}"; do
    local name="$target/$profile/$access" log=$run/sanity-$access.log started=$SECONDS
    echo "==> csi-sanity, $name"
    if ! "$sanity" \
        -csi.endpoint "unix:$node" -csi.controllerendpoint "unix:$controller" \
        -csi.stagingdir "$kubelet/staging-$access" -csi.mountdir "$kubelet/mount-$access" \
        -csi.testvolumesize $((64 * MiB)) -csi.testvolumeexpandsize $((128 * MiB)) \
        -csi.testvolumeaccesstype "$access" "${extra[@]}" \
        -ginkgo.no-color -ginkgo.v -ginkgo.timeout 60m ${CLOAK_SANITY_ARGS:-} \
        >"$log" 2>&1; then
      status=1
    fi
    grep -E '^(Ran |SUCCESS|FAIL)' "$log" || true
    echo "($((SECONDS - started)) s) skipped, by reason:"
    grep -E '^\s*\[SKIPPED\] ' "$log" | grep -v '\[SKIPPED\] in \[' | sed 's/^\s*\[SKIPPED\] //' | sort | uniq -c >"$run/skips-$access"
    cat "$run/skips-$access"
    local reason allowed known
    while read -r _ reason; do
      known=0
      for allowed in "${skips[@]}"; do [[ "$reason" == "$allowed" ]] && known=1; done
      if [[ $known == 0 ]]; then echo "sanity: $name: a spec was skipped for a reason not on the allowed list: $reason"; status=1; fi
    done <"$run/skips-$access"
    if [[ $status -ne 0 ]]; then
      echo "---- csi-sanity $name (failures) ----"
      grep -B10 -A30 -E '\[(FAIL|FAILED)\]' "$log" | head -400 || true
      local f
      for f in "$run"/*.log; do [[ $f == */sanity-* ]] && continue; echo "---- $(basename "$f") (last 60 lines) ----"; tail -60 "$f"; done
      return 1
    fi
  done
}

status=0
if [[ ${CLOAK_SANITY_SERIAL:-0} == 1 || ${#profiles[@]} == 1 ]]; then
  for profile in "${profiles[@]}"; do run_profile "$profile" || { status=1; break; }; done
else
  declare -A jobs
  for profile in "${profiles[@]}"; do
    mkdir -p "$work/$profile"
    run_profile "$profile" >"$work/$profile/report" 2>&1 &
    jobs[$profile]=$!
  done
  for profile in "${profiles[@]}"; do
    wait "${jobs[$profile]}" || status=1
    cat "$work/$profile/report"
  done
fi
exit $status
