import type { Runner } from "../../lib/exec.js";
import { TOOLS, toolVersions, type VersionProbe } from "../lib/metadata.js";

/** The programs netd's figures depend on, beside bench/lib's shared probes (wg, iperf3, qemu). */
const NETD_TOOLS: readonly VersionProbe[] = [
  { name: "wireguard-go", command: { file: "wireguard-go", args: ["--version"] }, parse: (o) => /^wireguard-go (\S+)/m.exec(o)?.[1] },
  { name: "iproute2", command: { file: "ip", args: ["-V"] }, parse: (o) => /iproute2-(\S+?),?\s/.exec(`${o} `)?.[1] },
  { name: "nftables", command: { file: "nft", args: ["--version"] }, parse: (o) => /^nftables (\S+)/m.exec(o)?.[1] },
];

export function netdVersions(run: Runner, extra: readonly VersionProbe[] = []): Promise<Record<string, string>> {
  return toolVersions(run, [TOOLS.wg, TOOLS.iperf3, ...NETD_TOOLS, ...extra]);
}

/** kube-apiserver and etcd as test/apiserver/build.sh caches them. */
export function apiServerProbes(binaries: { kubeApiserver: string; etcd: string }): VersionProbe[] {
  return [
    { name: "kube-apiserver", command: { file: binaries.kubeApiserver, args: ["--version"] }, parse: (o) => /^Kubernetes (\S+)/m.exec(o)?.[1] },
    { name: "etcd", command: { file: binaries.etcd, args: ["--version"] }, parse: (o) => /^etcd Version: (\S+)/m.exec(o)?.[1] },
  ];
}
