#!/usr/bin/env bash
# make demo-network: cloak's network half on this machine, with evidence a person can read.
#
# Two nodes in network namespaces with a pod each, a real kube-apiserver, and netd on both nodes
# (as the manifests' netd service account, under their RBAC and admission policy). A message
# goes from the pod on one node to the pod on the other, first without netd — tcpdump on the
# wire shows it — then with netd — tcpdump shows only WireGuard. About a minute; needs root.
# Everything is named cloak-demo-* and removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $EUID -eq 0 ]] || { echo "demo/network.sh: needs root (network namespaces, WireGuard)" >&2; exit 1; }
program=dist/test/deploy/network-demo.js
[[ -f $program ]] || { echo "demo/network.sh: $program is missing: run \`make demo-network\` (it builds first)" >&2; exit 1; }
node=node_modules/.bin/node
[[ -x $node ]] || node=node

# A safety net under the program's own cleanup: whatever a killed run left behind.
leftovers() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cloak-demo-' || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -f /var/run/wireguard/cdemo-n1.sock /var/run/wireguard/cdemo-n2.sock
}
trap leftovers EXIT
"$node" "$program" "$@"
