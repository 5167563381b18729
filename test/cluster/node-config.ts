import { stringify } from "yaml";

/**
 * What a test/cluster node is configured with: containerd's, kubelet's and the CNI's files,
 * as texts, from the node's place in the testbed. Pure: test/cluster/cluster.ts writes them
 * before the guest boots (node.sh reads them there).
 */

export interface NodeSpec {
  readonly name: string;
  /** The node's underlay address (the guest's NIC), also kubelet's --node-ip. */
  readonly ip: string;
  /** The node's pod range: the bridge CNI hands out addresses from it (kubenet-style). */
  readonly podCIDR: string;
}

export interface RuntimePaths {
  readonly runc: string;
  readonly cniBin: string;
  /** The image name containerd starts every pod's sandbox from. */
  readonly pauseImage: string;
}

/** containerd 2.x (config version 3): CRI with runc under cgroupfs, overlayfs, the bridge CNI. */
export function containerdConfig(paths: RuntimePaths): string {
  const toml = (s: string) => JSON.stringify(s);
  return `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
# No btrfs, zfs or device-mapper pools on a test node: containerd would log their failures.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  # The guest's RAM holds the disk: keep no compressed copy of what is unpacked.
  discard_unpacked_layers = true
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${toml(paths.pauseImage)}

[plugins.'io.containerd.cri.v1.runtime']
  # securityfs is not mounted in the guest: AppArmor cannot be used.
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = ${toml(paths.runc)}
      # No systemd in the guest: cgroups are managed through cgroupfs (kubelet learns it over CRI).
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [${toml(paths.cniBin)}]
    conf_dir = "/etc/cni/net.d"
`;
}

/**
 * The bridge CNI on the node's pod range, kubenet-style: no masquerade, because a packet from a
 * pod to a pod on another node must leave with its pod address (netd's WireGuard peers accept
 * exactly the other node's pod range).
 */
export function cniConfig(node: NodeSpec): string {
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "cloak-test-pods",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: "host-local", ranges: [[{ subnet: node.podCIDR }]], routes: [{ dst: "0.0.0.0/0" }] },
        },
        { type: "loopback" },
      ],
    },
    null,
    2,
  )}\n`;
}

/** kubelet's KubeletConfiguration: authenticated API (the test CA), sized for a small emulated guest. */
export function kubeletConfig(node: NodeSpec, o: { clientCAFile: string; clusterDNS?: string }): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: node.ip,
    containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
    cgroupDriver: "cgroupfs",
    // Only the API server (a client certificate from the test CA) may call kubelet's API.
    authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: o.clientCAFile } },
    authorization: { mode: "AlwaysAllow" },
    failSwapOn: false,
    resolvConf: "/etc/kubernetes/resolv.conf",
    clusterDomain: "cluster.local",
    ...(o.clusterDNS ? { clusterDNS: [o.clusterDNS] } : {}),
    // The guest's disk is a sparse file in its RAM and its RAM is small: defaults would evict.
    evictionHard: { "memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    enforceNodeAllocatable: [],
    // Emulated CPU: a sandbox or a CSI call can take far longer than on hardware.
    runtimeRequestTimeout: "10m",
    serializeImagePulls: false,
    podCIDR: node.podCIDR,
  });
}

/** kube-proxy in nftables mode (it runs only `nft`); Services of the cluster's range on this node. */
export function kubeProxyConfig(node: NodeSpec, o: { kubeconfig: string; clusterCIDR: string }): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "nftables",
    clientConnection: { kubeconfig: o.kubeconfig },
    hostnameOverride: node.name,
    // Traffic from the pods' range is not masqueraded: a pod's address reaches the endpoint.
    clusterCIDR: o.clusterCIDR,
    // The guest's conntrack table is the kernel's default; kube-proxy need not resize it.
    conntrack: { maxPerCore: 0 },
    metricsBindAddress: "127.0.0.1:10249",
    healthzBindAddress: "127.0.0.1:10256",
  });
}
