import type { CoreV1Api, V1Node } from "@kubernetes/client-node";
import { generateKeyPair } from "../../netd/keys.js";
import { PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION } from "../../netd/nodes.js";

/**
 * The Node objects of a large cluster for the convergence benchmark: each one looks like what a
 * kubelet registers (labels, capacity, conditions, node info, a short image list), plus what
 * netd on that node would have published (key and port). No netd runs for them: the data plane
 * under test is the one netd's, and it needs no real peers. Address plan, disjoint from the
 * netns testbed's documentation ranges:
 *
 *   InternalIP   172.16.0.0/12      node i: 172.(16 + i>>16).(i>>8 & 255).(i & 255)
 *   pod CIDRs    10.64.0.0/10 /24   node i: 10.(64 + i>>8).(i & 255).0/24
 *                fd00:cdb::/48 /64  node i: fd00:cdb:0:<i hex>::/64
 */

/** Node i must fit the plan above: 10.64.0.0/10 holds 16 384 /24s. */
export const MAX_SYNTHETIC_NODES = 16_384;

export interface SyntheticNodeOptions {
  /** IPv6 pod CIDRs too (dual stack: twice the allowed-ips and routes). */
  readonly dualStack: boolean;
}

export function syntheticName(i: number): string {
  return `bench-${String(i).padStart(5, "0")}`;
}

export function syntheticAddresses(i: number): { internalIP: string; podCIDR4: string; podCIDR6: string } {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_SYNTHETIC_NODES) throw new RangeError(`synthetic node index ${i} is outside 0..${MAX_SYNTHETIC_NODES - 1}`);
  return {
    internalIP: `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    podCIDR4: `10.${64 + (i >> 8)}.${i & 255}.0/24`,
    podCIDR6: `fd00:cdb:0:${i.toString(16)}::/64`,
  };
}

/** The pod CIDRs node i publishes, as netd will program them (canonical text). */
export function syntheticPodCIDRs(i: number, o: SyntheticNodeOptions): string[] {
  const a = syntheticAddresses(i);
  return o.dualStack ? [a.podCIDR4, a.podCIDR6] : [a.podCIDR4];
}

const IMAGES = ["registry.k8s.io/pause:3.10", "registry.k8s.io/kube-proxy:v1.34.4", "docker.io/library/nginx:1.27", "quay.io/prometheus/node-exporter:v1.9.1", "ghcr.io/cloak/cloak:0.1.0"];

/** A kubelet-like Node with netd's annotations; `publicKey` is what its netd would publish. */
export function syntheticNode(i: number, publicKey: string, o: SyntheticNodeOptions): V1Node {
  const name = syntheticName(i);
  const a = syntheticAddresses(i);
  const podCIDRs = syntheticPodCIDRs(i, o);
  const heartbeat = new Date(Date.UTC(2026, 0, 1));
  const condition = (type: string, status: string, reason: string) => ({
    type,
    status,
    reason,
    message: `kubelet reports ${reason}`,
    lastHeartbeatTime: heartbeat,
    lastTransitionTime: heartbeat,
  });
  const resources = { cpu: "8", memory: "32827228Ki", "ephemeral-storage": "101430960Ki", pods: "110", "hugepages-2Mi": "0" };
  return {
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "bench.large",
        "topology.kubernetes.io/region": "bench-1",
        "topology.kubernetes.io/zone": `bench-1${"abc"[i % 3]}`,
      },
      annotations: {
        [PUBLIC_KEY_ANNOTATION]: publicKey,
        [PORT_ANNOTATION]: "51872",
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
      },
    },
    spec: { podCIDR: podCIDRs[0], podCIDRs, providerID: `bench://${name}` },
    status: {
      addresses: [
        { type: "InternalIP", address: a.internalIP },
        { type: "Hostname", address: name },
      ],
      capacity: resources,
      allocatable: resources,
      conditions: [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        condition("Ready", "True", "KubeletReady"),
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: `${i.toString(16).padStart(8, "0")}${"0".repeat(24)}`,
        systemUUID: `${i.toString(16).padStart(8, "0")}-0000-4000-8000-000000000000`,
        bootID: `${i.toString(16).padStart(8, "0")}-0000-4000-8000-000000000001`,
        kernelVersion: "6.1.0-56-amd64",
        osImage: "Debian GNU/Linux 12 (bookworm)",
        containerRuntimeVersion: "containerd://1.7.24",
        kubeletVersion: "v1.34.4",
        kubeProxyVersion: "",
        operatingSystem: "linux",
        architecture: "amd64",
      },
      images: IMAGES.map((image, k) => ({
        names: [`${image.split(":")[0]}@sha256:${(i * 7 + k).toString(16).padStart(64, "0")}`, image],
        sizeBytes: 10_000_000 * (k + 1),
      })),
    },
  };
}

/**
 * Creates synthetic nodes `from` ≤ i < `to` through the API, `concurrency` requests at a time.
 * One create each: the API server keeps a Node's status on create (as a kubelet registers), so
 * each node is complete (key, address, CIDRs) the moment it exists.
 */
export async function createSyntheticNodes(core: CoreV1Api, from: number, to: number, o: SyntheticNodeOptions & { concurrency: number }): Promise<void> {
  let next = from;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < to; i = next++) {
      await core.createNode({ body: syntheticNode(i, generateKeyPair().publicKey, o) });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
}
