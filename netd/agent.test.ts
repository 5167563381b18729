import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../lib/log.js";
import { Agent, mtuOverheadFor } from "./agent.js";
import type { ApplyResult, Dataplane, Implementation, NodeSource } from "./backend.js";
import { parseCommand } from "./config.js";
import type { KeyPair } from "./keys.js";
import { NetdMetrics } from "./metrics.js";
import { PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION, type NodeInfo } from "./nodes.js";
import type { Plan } from "./plan.js";
import { startStatusServer } from "./status-server.js";
import type { StrictRules } from "./tools/nft.js";
import type { LiveDevice } from "./tools/wg.js";

/**
 * The Agent's loop against fakes of its two seams (backend.ts): which reconciles are full and
 * which are deltas, the dirty flag, retries, resyncs, strict mode before the first list, the
 * MTU by endpoint family, the order of a key rotation, and /status served without a command.
 * The real node source and dataplane run in test/host/netd and test/vm/netd.
 */

const KEY = (n: number) => `${String.fromCharCode(65 + n).repeat(42)}A=`;

function node(name: string, i: number, extra: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    publicKey: KEY(i),
    port: 51872,
    internalIPs: [`192.0.2.${10 + i}`],
    podCIDRs: [`198.51.100.${64 * (i - 1)}/26`],
    created: i,
    problems: [],
    ...extra,
  };
}

class FakeNodes implements NodeSource {
  synced = false;
  onChange: ((nodes: ReadonlyMap<string, NodeInfo>, reason: string) => void) | undefined;
  nodes = new Map<string, NodeInfo>();
  patches: Array<Readonly<Record<string, string | null>>> = [];
  gets: string[] = [];
  failGet = false;
  failPatches = 0;
  events: string[];

  constructor(events: string[]) {
    this.events = events;
  }

  start(onChange: (nodes: ReadonlyMap<string, NodeInfo>, reason: string) => void): void {
    this.events.push("watch started");
    this.onChange = onChange;
  }
  async stop(): Promise<void> {}
  async get(name: string): Promise<NodeInfo | undefined> {
    this.gets.push(name);
    if (this.failGet) throw new Error("API server unreachable");
    return this.nodes.get(name);
  }
  async annotate(name: string, annotations: Readonly<Record<string, string | null>>): Promise<void> {
    this.events.push(`annotate ${name}`);
    if (this.failPatches > 0) {
      this.failPatches--;
      throw new Error("patch refused");
    }
    this.patches.push(annotations);
    const n = this.nodes.get(name);
    if (n) this.nodes.set(name, { ...n, publicKey: annotations[PUBLIC_KEY_ANNOTATION] ?? undefined, port: Number(annotations[PORT_ANNOTATION]) });
  }
  /** A (re-)list: the agent's next reconcile compares with the live state. */
  list(...nodes: NodeInfo[]): void {
    this.nodes = new Map(nodes.map((n) => [n.name, n]));
    this.synced = true;
    this.onChange?.(this.nodes, "list");
  }
  event(reason: string, n: NodeInfo, remove = false): void {
    if (remove) this.nodes.delete(n.name);
    else this.nodes.set(n.name, n);
    this.onChange?.(this.nodes, reason);
  }
}

class FakeDataplane implements Dataplane {
  implementation: Implementation | undefined = "kernel";
  applies: Array<{ plan: Plan; mode: "full" | "delta"; strict: boolean; publicKey: string }> = [];
  mtus: number[] = [];
  reads = 0;
  failApplies = 0;
  underlay = 1500;
  strictInstalled: Array<Omit<StrictRules, "table" | "iface">> = [];
  strictLive = false;
  /** Holds an apply until released: to let events arrive during a reconcile. */
  gate: Promise<void> | undefined;

  constructor(private readonly events: string[]) {}

  async ensureInterface(mtu: number): Promise<{ created: boolean; implementation: Implementation }> {
    this.mtus.push(mtu);
    return { created: false, implementation: "kernel" };
  }
  async apply(plan: Plan, keys: KeyPair & { file: string }, strict: boolean, mode: "full" | "delta"): Promise<ApplyResult> {
    await this.gate;
    this.events.push(`apply ${mode}`);
    if (this.failApplies > 0) {
      this.failApplies--;
      throw new Error("wg set failed");
    }
    this.applies.push({ plan, mode, strict, publicKey: keys.publicKey });
    const device: LiveDevice = { publicKey: keys.publicKey, listenPort: 51872, fwmark: 0, peers: plan.peers.map((p) => ({ ...p, latestHandshake: 0, rxBytes: 1, txBytes: 2 })) };
    return { peersChanged: 0, routesChanged: 0, rulesChanged: 0, strictChanged: false, keyChanged: false, device: mode === "full" ? device : undefined, mode };
  }
  async setPrivateKey(file: string): Promise<void> {
    this.events.push(`set private key ${file.split("/").pop()}`);
  }
  async ensureStrict(rules: Omit<StrictRules, "table" | "iface">): Promise<"kept" | "installed"> {
    this.events.push("strict table");
    if (this.strictLive) return "kept";
    this.strictInstalled.push(rules);
    return "installed";
  }
  async readDevice(): Promise<LiveDevice> {
    this.reads++;
    return { publicKey: undefined, listenPort: 51872, fwmark: 0, peers: [] };
  }
  async underlayMtu(): Promise<{ iface: string; mtu: number }> {
    return { iface: "eth0", mtu: this.underlay };
  }
  async smallestUnderlayMtu(): Promise<number> {
    return this.underlay;
  }
}

describe("Agent", () => {
  let dir: string;
  let events: string[];
  let nodes: FakeNodes;
  let dp: FakeDataplane;
  let agent: Agent | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-netd-agent-"));
    events = [];
    nodes = new FakeNodes(events);
    dp = new FakeDataplane(events);
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (flags: string[] = []) => {
    const { config } = parseCommand(["run", "--node-name=n1", `--state-dir=${dir}`, "--resync-interval=3600", ...flags], {});
    agent = new Agent({ config, nodes, dataplane: dp, logger: createLogger({ component: "test", level: "silent" }), metrics: new NetdMetrics(), retryMs: 20, statsIntervalMs: 3_600_000 });
    await agent.start();
    return agent;
  };
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      await agent?.settled();
    }
  };

  it("acts on nothing before the first list; a list is applied in full, a watch event as a delta", async () => {
    await start(["--no-strict"]);
    agent?.schedule("resync");
    await settle();
    expect(dp.applies).toEqual([]);
    nodes.list(node("n1", 1), node("n2", 2));
    await settle();
    nodes.event("added", node("n3", 3));
    await settle();
    nodes.event("deleted", node("n2", 2), true);
    await settle();
    expect(dp.applies.map((a) => [a.mode, a.plan.peers.map((p) => p.node)])).toEqual([
      ["full", ["n2"]],
      ["delta", ["n2", "n3"]],
      ["delta", ["n3"]],
    ]);
    // The key is published once, after the first apply that found this Node without it.
    expect(nodes.patches).toHaveLength(1);
  });

  it("runs once more, with the newest nodes, for events that arrive during a reconcile (never once per event)", async () => {
    await start(["--no-strict"]);
    nodes.list(node("n1", 1), node("n2", 2));
    await settle();
    let release = () => {};
    dp.gate = new Promise((r) => (release = r));
    nodes.event("added", node("n3", 3));
    for (let i = 4; i < 9; i++) nodes.event("added", node(`n${i}`, i));
    dp.gate = undefined;
    release();
    await settle();
    // The publish after the first list is one more event (this Node changed); then n3's event,
    // then one pass for the five that arrived while it ran.
    const after = dp.applies.slice(1);
    expect(after.at(-1)?.plan.peers.map((p) => p.node)).toEqual(["n2", "n3", "n4", "n5", "n6", "n7", "n8"]);
    expect(after.length).toBeLessThanOrEqual(3);
  });

  it("makes a resync full, and after a failure retries in full even when the next event is a delta", async () => {
    const a = await start(["--no-strict"]);
    nodes.list(node("n1", 1), node("n2", 2));
    await settle();
    a.schedule("resync");
    await settle();
    expect(dp.applies.at(-1)?.mode).toBe("full");
    dp.failApplies = 1;
    nodes.event("added", node("n3", 3));
    await settle();
    expect(a.healthy).toBe(false);
    expect(a.status().lastError).toBe("wg set failed");
    await expect.poll(() => a.healthy, { timeout: 2_000 }).toBe(true);
    expect(events.filter((e) => e.startsWith("apply")).slice(-2)).toEqual(["apply delta", "apply full"]);
    expect(dp.applies.at(-1)?.plan.peers.map((p) => p.node)).toEqual(["n2", "n3"]);
  });

  it("fails the reconcile when publishing the key fails, and retries until it is published", async () => {
    const a = await start(["--no-strict"]);
    nodes.failPatches = 2;
    nodes.list(node("n1", 1, { publicKey: undefined }), node("n2", 2));
    await settle();
    expect(a.status().lastError).toMatch(/publishing the public key on Node n1 failed/);
    await expect.poll(() => nodes.patches.length, { timeout: 2_000 }).toBe(1);
    await expect.poll(() => a.healthy, { timeout: 2_000 }).toBe(true);
  });

  describe("strict mode (on by default)", () => {
    it("installs the drop table from --cluster-cidr before the first list, with this node's own CIDRs read once", async () => {
      nodes.nodes.set("n1", node("n1", 1, { podCIDRs: ["10.244.1.0/24"] }));
      await start(["--cluster-cidr=10.244.0.0/16,fd00:244::/56"]);
      expect(events.slice(0, 2)).toEqual(["strict table", "watch started"]);
      expect(nodes.gets).toEqual(["n1"]);
      expect(dp.strictInstalled).toEqual([{ strict: ["10.244.0.0/16", "fd00:244::/56"], local: ["10.244.1.0/24"] }]);
    });

    it("keeps the prefixes across a restart or reboot (state dir), without reading its Node", async () => {
      await start(["--cluster-cidr=10.244.0.0/16"]);
      nodes.list(node("n1", 1, { podCIDRs: ["10.244.1.0/24"] }), node("n2", 2, { podCIDRs: ["10.99.0.0/24"] }));
      await settle();
      expect(JSON.parse(await readFile(join(dir, "strict.json"), "utf8"))).toEqual({ strict: ["10.244.0.0/16", "10.99.0.0/24"], local: ["10.244.1.0/24"] });
      await agent?.stop();
      // A reboot: no table live, the API server not reachable yet.
      events.length = 0;
      nodes = new FakeNodes(events);
      nodes.failGet = true;
      dp = new FakeDataplane(events);
      await start(["--cluster-cidr=10.244.0.0/16"]);
      expect(nodes.gets).toEqual([]);
      expect(dp.strictInstalled).toEqual([{ strict: ["10.244.0.0/16", "10.99.0.0/24"], local: ["10.244.1.0/24"] }]);
      expect(events.indexOf("strict table")).toBeLessThan(events.indexOf("watch started"));
    });

    it("leaves a live table alone at start (a restarted netd never opens a plain-text window)", async () => {
      dp.strictLive = true;
      await start(["--cluster-cidr=10.244.0.0/16"]);
      expect(events.slice(0, 2)).toEqual(["strict table", "watch started"]);
      expect(dp.strictInstalled).toEqual([]);
    });

    it("drops its own CIDRs' traffic too when it cannot read its Node on a first start, rather than open a window", async () => {
      nodes.failGet = true;
      await start(["--cluster-cidr=10.244.0.0/16"]);
      expect(dp.strictInstalled).toEqual([{ strict: ["10.244.0.0/16"], local: [] }]);
    });

    it("is off with --no-strict: no table at start, none asked of the apply", async () => {
      await start(["--no-strict", "--cluster-cidr=10.244.0.0/16"]);
      nodes.list(node("n1", 1), node("n2", 2));
      await settle();
      expect(events).not.toContain("strict table");
      expect(dp.applies[0]?.strict).toBe(false);
      expect(dp.applies[0]?.plan.strict).toBeUndefined();
    });
  });

  describe("MTU", () => {
    it("is the underlay less 60 with IPv4 endpoints and less 80 once a peer's endpoint is IPv6", async () => {
      await start(["--no-strict"]);
      nodes.list(node("n1", 1), node("n2", 2));
      await settle();
      expect(dp.mtus.at(-1)).toBe(1440);
      nodes.event("added", node("n3", 3, { internalIPs: ["fd00:cd::13"] }));
      await settle();
      expect(dp.mtus.at(-1)).toBe(1420);
      nodes.event("deleted", node("n3", 3), true);
      await settle();
      expect(dp.mtus.at(-1)).toBe(1440);
    });

    it("takes --mtu-overhead or --mtu over the endpoints' family", async () => {
      await start(["--no-strict", "--mtu-overhead=100"]);
      nodes.list(node("n1", 1), node("n2", 2));
      await settle();
      expect(dp.mtus.at(-1)).toBe(1400);
    });

    it("mtuOverheadFor: by endpoints, else by the family peers would use", () => {
      const peer = (endpoint: string) => ({ node: "x", publicKey: KEY(1), endpoint, allowedIPs: [], persistentKeepalive: undefined });
      expect(mtuOverheadFor({ peers: [] }, 4)).toBe(60);
      expect(mtuOverheadFor({ peers: [] }, 6)).toBe(80);
      expect(mtuOverheadFor({ peers: [peer("192.0.2.1:1"), peer("192.0.2.2:1")] }, 6)).toBe(60);
      expect(mtuOverheadFor({ peers: [peer("192.0.2.1:1"), peer("[fd00::2]:1")] }, 4)).toBe(80);
    });
  });

  it("rotates a key by publishing it first and switching the interface right after, then a full reconcile", async () => {
    const a = await start(["--no-strict"]);
    nodes.list(node("n1", 1, { publicKey: undefined }), node("n2", 2));
    await settle();
    const before = a.status().publicKey;
    events.length = 0;
    await a.rotateKey();
    await settle();
    const after = a.status().publicKey;
    expect(after).not.toBe(before);
    expect(nodes.patches.at(-1)?.[PUBLIC_KEY_ANNOTATION]).toBe(after);
    expect(events.slice(0, 3)).toEqual(["annotate n1", "set private key private.key", "apply full"]);
    expect(dp.applies.at(-1)?.publicKey).toBe(after);
  });

  it("serves /status and /metrics from the last reconcile: no WireGuard read per request", async () => {
    const a = await start(["--no-strict"]);
    nodes.list(node("n1", 1), node("n2", 2));
    await settle();
    const server = await startStatusServer({ address: "127.0.0.1:0", agent: a, metrics: new NetdMetrics(), logger: createLogger({ component: "test", level: "silent" }) });
    try {
      const reads = dp.reads;
      for (let i = 0; i < 5; i++) {
        const status = (await (await fetch(`http://127.0.0.1:${server.port}/status`)).json()) as { peers: Array<{ node: string; txBytes: number }>; statsAt: string };
        expect(status.peers).toEqual([expect.objectContaining({ node: "n2", txBytes: 2 })]);
        expect(status.statsAt).toBeDefined();
        expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).ok).toBe(true);
      }
      expect(dp.reads).toBe(reads);
      expect(server.address).toBe(`127.0.0.1:${server.port}`);
    } finally {
      await server.close();
    }
  });

  it("starts without a saved strict file that is unreadable, and says why", async () => {
    await writeFile(join(dir, "strict.json"), "{not json");
    await start(["--cluster-cidr=10.244.0.0/16"]);
    expect(dp.strictInstalled[0]?.strict).toEqual(["10.244.0.0/16"]);
  });
});

describe("startupStrictSets", () => {
  it("keeps the outermost prefixes of the cluster ranges and the saved ones", async () => {
    const { startupStrictSets } = await import("./strict-state.js");
    expect(startupStrictSets(["198.51.100.0/24"], { strict: ["198.51.100.64/26", "fd00:cd:2::/64"], local: ["198.51.100.0/26"] }, ["198.51.100.0/26"])).toEqual({
      strict: ["198.51.100.0/24", "fd00:cd:2::/64"],
      local: ["198.51.100.0/26"],
    });
  });
});
