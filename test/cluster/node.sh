#!/usr/bin/env bash
# One Kubernetes node of test/cluster, inside a VM-tier guest (test/vm/run.sh, CLOAK_VM=force:
# kubelet owns cgroups and sets global sysctls, so it never runs on the host's kernel). It gets
# the guest ready the way a node's init system would, starts containerd (its images are on the
# node's disk already), then runs kubelet and kube-proxy until the guest is stopped. Their logs
# go to this script's output, line-prefixed, which run.sh streams to the harness.
#
# Everything it reads was written before boot (the host's root is shared with cache=loose:
# files that change after boot may look stale). CLOAK_NODE_DIR holds kubelet.kubeconfig,
# kubelet.yaml, containerd.toml, 10-bridge.conflist and kube-proxy.{kubeconfig,yaml}
# (test/cluster/cluster.ts writes them). Environment: CLOAK_NODE_NAME, CLOAK_NODE_IP (/24 on the
# underlay), CLOAK_NODE_GATEWAY, CLOAK_NODE_DIR, CLOAK_KUBELET, CLOAK_KUBE_PROXY,
# CLOAK_CONTAINERD_BIN (containerd, its shim, ctr), CLOAK_RUNC, CLOAK_CNI_BIN.
set -euo pipefail

say() { echo "node ${CLOAK_NODE_NAME:-?}: $*"; }
for var in CLOAK_NODE_NAME CLOAK_NODE_IP CLOAK_NODE_GATEWAY CLOAK_NODE_DIR CLOAK_KUBELET CLOAK_KUBE_PROXY CLOAK_CONTAINERD_BIN CLOAK_RUNC CLOAK_CNI_BIN; do
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

# ---- state on the node's disk: ext4 on a virtio disk (serial cloak-node-state) that
# test/cluster/node-disk.sh wrote with the images already in containerd's store; qemu keeps the
# guest's writes apart (snapshot=on). Not the guest's overlay root: overlayfs cannot stack on it.
disk=''
for dev in /sys/block/vd*; do
  [[ $(cat "$dev/serial" 2>/dev/null) == cloak-node-state ]] && disk=/dev/${dev##*/}
done
[[ -n $disk ]] || { say "error: no disk with serial cloak-node-state (CLOAK_VM_QEMU_ARGS)"; exit 2; }
mkdir -p /var/lib/node
mount "$disk" /var/lib/node
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
# The daemons run until the guest powers off (after this script); one that exits ends it.
pids=()
containerd --config "$CLOAK_NODE_DIR/containerd.toml" 2>&1 | sed -u 's/^/containerd: /' &
pids+=($!)
for _ in $(seq 600); do
  ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && break
  sleep 0.2
done
ctr --address /run/containerd/containerd.sock version >/dev/null || { say "error: containerd did not start"; exit 1; }
step "containerd ready"
ctr --address /run/containerd/containerd.sock -n k8s.io images list -q | sed -u 's/^/image: /'

# ---- kubelet and kube-proxy: until the guest is stopped ----------------------------------------
"$CLOAK_KUBELET" \
  --config="$CLOAK_NODE_DIR/kubelet.yaml" \
  --kubeconfig="$CLOAK_NODE_DIR/kubelet.kubeconfig" \
  --hostname-override="$CLOAK_NODE_NAME" \
  --node-ip="$CLOAK_NODE_IP" \
  --cert-dir=/var/lib/kubelet/pki \
  --v=1 2>&1 | sed -u 's/^/kubelet: /' &
pids+=($!)
"$CLOAK_KUBE_PROXY" --config="$CLOAK_NODE_DIR/kube-proxy.yaml" --v=1 2>&1 | sed -u 's/^/kube-proxy: /' &
pids+=($!)
step "kubelet and kube-proxy started"
wait -n "${pids[@]}"
say "error: a node daemon exited"
exit 1
