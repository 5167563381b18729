import { describe, expect, it } from "vitest";
import type { NodeInfo } from "./nodes.js";
import { plan, type PlanOptions } from "./plan.js";

const KEY = (n: number) => `${String.fromCharCode(65 + n).repeat(42)}A=`;
const SELF_KEY = KEY(25);

function node(name: string, i: number, extra: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    publicKey: KEY(i),
    port: undefined,
    internalIPs: [`192.0.2.${10 + i}`, `fd00:cd::${10 + i}`],
    podCIDRs: [`198.51.100.${64 * (i - 1)}/26`, `fd00:cd:${i}::/64`],
    created: i * 1000,
    problems: [],
    ...extra,
  };
}

const options: PlanOptions = {
  nodeName: "n1",
  publicKey: SELF_KEY,
  defaultPort: 51872,
  nodeEncryption: false,
  endpointFamily: 4,
  persistentKeepalive: undefined,
  strict: false,
  clusterCIDRs: [],
};

const n1 = node("n1", 1, { publicKey: SELF_KEY });
const n2 = node("n2", 2);
const n3 = node("n3", 3);

describe("plan", () => {
  it("makes one peer per other node with a key: endpoint, pod CIDRs, routes", () => {
    const p = plan([n3, n1, n2], options);
    expect(p.peers).toEqual([
      { node: "n2", publicKey: KEY(2), endpoint: "192.0.2.12:51872", allowedIPs: ["198.51.100.64/26", "fd00:cd:2::/64"], persistentKeepalive: undefined },
      { node: "n3", publicKey: KEY(3), endpoint: "192.0.2.13:51872", allowedIPs: ["198.51.100.128/26", "fd00:cd:3::/64"], persistentKeepalive: undefined },
    ]);
    expect(p.routes).toEqual(["198.51.100.128/26", "198.51.100.64/26", "fd00:cd:2::/64", "fd00:cd:3::/64"]);
    expect(p.self).toBe(n1);
    expect(p.skipped).toEqual([]);
    expect(p.strict).toBeUndefined();
  });

  const cases: Array<{ name: string; nodes: NodeInfo[]; opts?: Partial<PlanOptions>; peers: Record<string, string[]>; endpoints?: Record<string, string>; skipped?: Record<string, RegExp> }> = [
    {
      name: "IPv6 endpoints and a published port",
      nodes: [n1, node("n2", 2, { port: 51999 })],
      opts: { endpointFamily: 6 },
      peers: { n2: ["198.51.100.64/26", "fd00:cd:2::/64"] },
      endpoints: { n2: "[fd00:cd::12]:51999" },
    },
    {
      name: "falls back to the other family when a node has only that one",
      nodes: [n1, node("n2", 2, { internalIPs: ["fd00:cd::12"] })],
      peers: { n2: ["198.51.100.64/26", "fd00:cd:2::/64"] },
      endpoints: { n2: "[fd00:cd::12]:51872" },
    },
    {
      name: "node-to-node encryption adds the node IPs",
      nodes: [n1, n2],
      opts: { nodeEncryption: true },
      peers: { n2: ["192.0.2.12/32", "198.51.100.64/26", "fd00:cd:2::/64", "fd00:cd::12/128"] },
    },
    {
      name: "a node without a key is skipped",
      nodes: [n1, n2, node("n3", 3, { publicKey: undefined })],
      peers: { n2: ["198.51.100.64/26", "fd00:cd:2::/64"] },
      skipped: { n3: /no public key/ },
    },
    {
      name: "two nodes with one key are both skipped and named",
      nodes: [n1, n2, node("n3", 3, { publicKey: KEY(2) })],
      peers: {},
      skipped: { n2: /also published by n3/, n3: /also published by n2/ },
    },
    {
      name: "a node showing this node's own key is skipped",
      nodes: [n1, node("n2", 2, { publicKey: SELF_KEY })],
      peers: {},
      skipped: { n2: /own public key/ },
    },
    {
      name: "a node without an InternalIP is skipped",
      nodes: [n1, node("n2", 2, { internalIPs: [] })],
      peers: {},
      skipped: { n2: /no InternalIP/ },
    },
    {
      name: "a bad annotation is reported",
      nodes: [n1, node("n2", 2, { publicKey: undefined, problems: ["annotation x is not a WireGuard public key"] })],
      peers: {},
      skipped: { n2: /not a WireGuard public key/ },
    },
    {
      name: "a pod CIDR claimed by two nodes goes to the newer one",
      nodes: [n1, n2, node("n4", 4, { podCIDRs: ["198.51.100.64/26"], created: 9_000 })],
      peers: { n2: ["fd00:cd:2::/64"], n4: ["198.51.100.64/26"] },
    },
    {
      name: "this node's own pod CIDR is never given to a peer",
      nodes: [n1, node("n2", 2, { podCIDRs: ["198.51.100.0/26", "198.51.100.64/26"] })],
      peers: { n2: ["198.51.100.64/26"] },
    },
    {
      name: "no self node yet: peers still planned",
      nodes: [n2, n3],
      peers: { n2: ["198.51.100.64/26", "fd00:cd:2::/64"], n3: ["198.51.100.128/26", "fd00:cd:3::/64"] },
    },
  ];

  it.each(cases)("$name", ({ nodes, opts, peers, endpoints, skipped }) => {
    const p = plan(nodes, { ...options, ...opts });
    expect(Object.fromEntries(p.peers.map((x) => [x.node, x.allowedIPs]))).toEqual(peers);
    for (const [name, endpoint] of Object.entries(endpoints ?? {})) expect(p.peers.find((x) => x.node === name)?.endpoint).toBe(endpoint);
    const reasons: Record<string, string> = {};
    for (const s of p.skipped) reasons[s.node] = `${reasons[s.node] ?? ""}${s.reason}; `;
    expect(Object.keys(reasons).sort()).toEqual(Object.keys(skipped ?? {}).sort());
    for (const [name, re] of Object.entries(skipped ?? {})) expect(reasons[name]).toMatch(re);
    expect(p.routes).toEqual([...new Set(p.peers.flatMap((x) => x.allowedIPs))].sort());
  });

  it("reports CIDR conflicts", () => {
    const p = plan([n1, n2, node("n4", 4, { podCIDRs: ["198.51.100.64/26"], created: 9_000 })], options);
    expect(p.conflicts).toEqual([{ node: "n4", reason: "198.51.100.64/26 also claimed by n2; the newest node gets it" }]);
  });

  it("strict mode protects every other node's pod CIDRs, keyed or not, plus extra CIDRs", () => {
    const p = plan([n1, n2, node("n3", 3, { publicKey: undefined })], { ...options, strict: true, clusterCIDRs: ["203.0.113.7/24"] });
    expect(p.strict).toEqual({
      strict: ["198.51.100.128/26", "198.51.100.64/26", "203.0.113.0/24", "fd00:cd:2::/64", "fd00:cd:3::/64"],
      local: ["198.51.100.0/26", "fd00:cd:1::/64"],
    });
  });

  it("reports a prefix of this node's own as a conflict and routes it to no one", () => {
    const p = plan([n1, n2, node("n4", 4, { podCIDRs: ["198.51.100.0/26", "198.51.100.192/26"] })], options);
    expect(p.conflicts).toEqual([{ node: "n4", reason: "198.51.100.0/26 belongs to this node; not routed to n4" }]);
    expect(p.peers.find((x) => x.node === "n4")?.allowedIPs).toEqual(["198.51.100.192/26"]);
  });

  it("re-plans a Node event as a plan from scratch would, and keeps every unchanged peer as the same object", () => {
    // The planner works out each Node version's peer once: a delta's diff then passes over the
    // unchanged ones at once. Whatever it reuses must never make a plan differ from a fresh one.
    const fresh = (nodes: NodeInfo[]) => plan(structuredClone(nodes), options);
    const nodes = [n1, n2, n3, node("n4", 4), node("n5", 5)];
    const before = plan(nodes, options);
    // n4 now claims n2's CIDR (and is newer): n2 loses it, n4 gets it; n6 joins; n5 leaves.
    const n4 = node("n4", 4, { podCIDRs: ["198.51.100.64/26", "fd00:cd:4::/64"], created: 9_000 });
    const after = [n1, n2, n3, n4, node("n6", 6)];
    const next = plan(after, options);
    expect(next).toEqual(fresh(after));
    expect(next.peers.find((x) => x.node === "n3")).toBe(before.peers.find((x) => x.node === "n3"));
    expect(next.peers.find((x) => x.node === "n2")?.allowedIPs).toEqual(["fd00:cd:2::/64"]);
    // The conflict gone again: n2's peer is what a fresh plan makes, and so is everything else.
    const healed = [n1, n2, n3, node("n4", 4)];
    expect(plan(healed, options)).toEqual(fresh(healed));
    // Options are part of what a reused peer was made for.
    expect(plan(healed, { ...options, defaultPort: 1234, endpointFamily: 6 })).toEqual(plan(structuredClone(healed), { ...options, defaultPort: 1234, endpointFamily: 6 }));
    expect(plan(healed, { ...options, nodeEncryption: true })).toEqual(plan(structuredClone(healed), { ...options, nodeEncryption: true }));
  });
});
