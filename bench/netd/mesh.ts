import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import type { TestNode } from "../../test/netns/testbed.js";
import { scaled } from "../../test/netns/timing.js";
import { startEnv, type BenchEnv } from "./env.js";
import { HandTunnel } from "./hand-tunnel.js";

/**
 * Two nodes of the netns testbed with netd running on both and converged, plus a hand-made
 * WireGuard tunnel beside netd's: what the data-plane and the connectivity-gap benchmarks run
 * on. The host tier uses wireguard-go, the VM tier the kernel module; everything else is the same.
 */
export interface Mesh {
  readonly env: BenchEnv;
  readonly n1: TestNode;
  readonly n2: TestNode;
  /** The MTU netd gave its interface. */
  readonly netdMtu: number;
  readonly hand: HandTunnel;
  readonly implementation: "kernel" | "userspace";
  readonly endpointFamily: "ipv4" | "ipv6";
  close(): Promise<void>;
}

export const HAND_IFACE_PREFIX = "cndbhw-";

export async function startMesh(o: { implementation: "kernel" | "userspace"; endpointFamily: "ipv4" | "ipv6" }): Promise<Mesh> {
  const handIface = (n: TestNode) => `${HAND_IFACE_PREFIX}${n.name}`;
  const env = await startEnv({
    nodes: 2,
    implementation: o.implementation,
    // Strict mode off: the plain and hand-made paths this benchmark compares netd with would
    // otherwise be dropped by its table (their traffic does not leave through netd's interface).
    flags: [`--endpoint-family=${o.endpointFamily}`, "--no-strict"],
    extraInterfaces: ["n1", "n2"].map((n) => `${HAND_IFACE_PREFIX}${n}`),
  });
  try {
    const [n1, n2] = env.tb.nodes as [TestNode, TestNode];
    const { cluster } = env;
    await cluster.createNode(n1);
    await cluster.createNode(n2);
    await cluster.startNetd(n1);
    await cluster.startNetd(n2);
    await cluster.waitForPeers(n1, { n2: [n2.podCIDR4, n2.podCIDR6] }, scaled(60_000));
    await cluster.waitForPeers(n2, { n1: [n1.podCIDR4, n1.podCIDR6] }, scaled(60_000));
    const link = await env.tb.exec(n1.ns, ["ip", "-j", "link", "show", "dev", cluster.iface(n1)]);
    const netdMtu = (JSON.parse(link.stdout) as Array<{ mtu: number }>)[0]?.mtu ?? Number.NaN;
    const runner = createRunner({ logger: createLogger({ component: "bench-netd", level: "warn" }) });
    const hand = await HandTunnel.create({
      tb: env.tb,
      nodes: [n1, n2],
      runner,
      implementation: o.implementation,
      dir: env.dir,
      endpointFamily: o.endpointFamily,
      iface: handIface,
      port: 51999,
      table: 52999,
      rulePriority: 100,
      mtu: netdMtu,
    });
    return { env, n1, n2, netdMtu, hand, implementation: o.implementation, endpointFamily: o.endpointFamily, close: () => env.close() };
  } catch (err) {
    await env.close();
    throw err;
  }
}
