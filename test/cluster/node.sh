#!/usr/bin/env bash
# One Kubernetes node of test/cluster, inside a VM-tier guest (test/vm/run.sh, CLOAK_VM=force:
# kubelet owns cgroups and sets global sysctls, so it never runs on the host's kernel). It gets
# the guest ready the way a node's init system would, starts containerd, imports the images,
# then runs kubelet until the guest is stopped; kubelet and containerd log to this script's
# output, line-prefixed, which run.sh streams to the harness.
#
# Everything it reads was written before boot (the host's root is shared with cache=loose:
# files that change after boot may look stale): CLOAK_NODE_DIR holds kubelet.kubeconfig,
# kubelet.yaml, containerd.toml and 10-bridge.conflist (test/cluster/node-config.ts writes
# them). Environment: CLOAK_NODE_NAME, CLOAK_NODE_IP (/24 on the underlay), CLOAK_NODE_GATEWAY,
# CLOAK_NODE_DIR, CLOAK_NODE_IMAGES (OCI archives, space-separated), CLOAK_KUBELET,
# CLOAK_CONTAINERD_BIN (containerd, its shim, ctr), CLOAK_RUNC, CLOAK_CNI_BIN.
set -euo pipefail

say() { echo "node ${CLOAK_NODE_NAME:-?}: $*"; }
for var in CLOAK_NODE_NAME CLOAK_NODE_IP CLOAK_NODE_GATEWAY CLOAK_NODE_DIR CLOAK_KUBELET CLOAK_CONTAINERD_BIN CLOAK_RUNC CLOAK_CNI_BIN; do
  [[ -n ${!var:-} ]] || { say "error: $var is not set"; exit 2; }
done
[[ ${CLOAK_VM_MODE:-} == vm ]] || { say "error: a cluster node runs only inside a VM-tier guest (CLOAK_VM=force)"; exit 2; }
started=$SECONDS
step() { say "$1 (+$((SECONDS - started)) s)"; }

# ---- the kernel: cgroup v2 with every controller kubelet manages, the modules pods use -------
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+cpuset +cpu +io +memory +pids +hugetlb +misc" >/sys/fs/cgroup/cgroup.subtree_control
modprobe -a overlay br_netfilter veth bridge nf_tables nf_conntrack wireguard dm_crypt dm_integrity loop
sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
# Mounts made later (pods' volumes under /var/lib/kubelet) must propagate: what systemd does.
mount --make-rshared /

# ---- state on ext4, not on the guest's overlay root (overlayfs cannot stack on it) -----------
truncate -s 8G /run/node-disk.img
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 /run/node-disk.img
mkdir -p /var/lib/node
mount -o loop /run/node-disk.img /var/lib/node
for dir in kubelet containerd cloak; do
  mkdir -p "/var/lib/node/$dir" "/var/lib/$dir"
  mount --bind "/var/lib/node/$dir" "/var/lib/$dir"
done
mkdir -p /var/lib/node/pods /var/log/pods /etc/cni/net.d /run/containerd /etc/kubernetes
mount --bind /var/lib/node/pods /var/log/pods
cp "$CLOAK_NODE_DIR/10-bridge.conflist" /etc/cni/net.d/
# The node's own resolver file: the host's names a server outside the testbed.
echo "nameserver $CLOAK_NODE_GATEWAY" >/etc/kubernetes/resolv.conf
hostname "$CLOAK_NODE_NAME"
echo "$CLOAK_NODE_NAME" >/etc/hostname

# ---- the underlay: the tap the harness gave this guest (the only NIC) ------------------------
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
[[ -n $nic ]] || { say "error: the guest has no network interface (CLOAK_VM_QEMU_ARGS)"; exit 2; }
ip addr add "$CLOAK_NODE_IP/24" dev "$nic"
ip link set "$nic" up
ip route add default via "$CLOAK_NODE_GATEWAY"
step "kernel, disk and network ready ($nic $CLOAK_NODE_IP)"

# ---- containerd ------------------------------------------------------------------------------
export PATH=$CLOAK_CONTAINERD_BIN:$(dirname "$CLOAK_RUNC"):$PATH
# Both daemons run until the guest powers off (after this script); one that exits ends it.
pids=()
containerd --config "$CLOAK_NODE_DIR/containerd.toml" 2>&1 | sed -u 's/^/containerd: /' &
pids+=($!)
for _ in $(seq 600); do
  ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && break
  sleep 0.2
done
ctr --address /run/containerd/containerd.sock version >/dev/null || { say "error: containerd did not start"; exit 1; }
step "containerd ready"
for image in ${CLOAK_NODE_IMAGES:-}; do
  ctr --address /run/containerd/containerd.sock -n k8s.io images import --platform linux/amd64 "$image" |
    sed -u 's/^/ctr: /'
done
step "images imported: ${CLOAK_NODE_IMAGES:-none}"

# ---- kubelet: until the guest is stopped -----------------------------------------------------
"$CLOAK_KUBELET" \
  --config="$CLOAK_NODE_DIR/kubelet.yaml" \
  --kubeconfig="$CLOAK_NODE_DIR/kubelet.kubeconfig" \
  --hostname-override="$CLOAK_NODE_NAME" \
  --node-ip="$CLOAK_NODE_IP" \
  --cert-dir=/var/lib/kubelet/pki \
  --v=1 2>&1 | sed -u 's/^/kubelet: /' &
pids+=($!)
step "kubelet started"
wait -n "${pids[@]}"
say "error: a node daemon exited"
exit 1
