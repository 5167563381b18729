import { afterAll, beforeAll, expect, it } from "vitest";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { startApiServer, type ApiServer } from "../apiserver/apiserver.js";
import { waitFor } from "../support/wait.js";
import { NetdCluster, WG_PORT } from "./netd-cluster.js";
import { createTestbed, type Testbed, type TestNode } from "./testbed.js";
import { httpGet, send, startCapture, startEcho, startProbe, stopSenders } from "./traffic.js";
import { scaled } from "./timing.js";
import type { Daemon } from "./daemon.js";
import { PUBLIC_KEY_ANNOTATION, PORT_ANNOTATION } from "../../netd/nodes.js";
import { packageRoot } from "../../lib/paths.js";
import { generateKeyPair } from "../../netd/keys.js";

/**
 * issue 4's scenarios, against a real kube-apiserver and real WireGuard in the netns testbed.
 * The host tier runs them on wireguard-go, the VM tier on the kernel module: one definition.
 * They run in order on one cluster (each builds on the state the previous one left), which
 * keeps the tier fast: one API server, one testbed.
 */

export interface ScenarioOptions {
  readonly tier: "host" | "vm";
  readonly implementation: "kernel" | "userspace";
  /** Which InternalIP family peers use as endpoints. */
  readonly endpointFamily: "ipv4" | "ipv6";
}

const UDP_ECHO = 7777;
const TCP_ECHO = 7778;
const MARKER = "CLOAK-PLAINTEXT-MARKER-4f1d";
const CONTROL_MARKER = "CLOAK-CONTROL-PLAINTEXT-9b2e";
const TEST_TIMEOUT = scaled(60_000);

export function netdScenarios(o: ScenarioOptions): void {
  let tb: Testbed;
  let api: ApiServer;
  let cluster: NetdCluster;
  let dir: string;
  const echoes: Daemon[] = [];
  const results: Record<string, unknown> = { tier: o.tier, implementation: o.implementation, endpointFamily: o.endpointFamily };
  let n1: TestNode, n2: TestNode, n3: TestNode;

  const pods = (n: TestNode) => [n.podCIDR4, n.podCIDR6];
  /** `cloak netd ...` inside a node's namespace. */
  const cloak = (n: TestNode, ...args: string[]) =>
    tb.exec(n.ns, [process.execPath, join(packageRoot(), "dist/cmd/cloak.js"), "netd", ...args], { timeoutMs: scaled(60_000) });
  const capture = (name: string) => startCapture(tb, tb.underlayNs, "any", join(dir, `${name}.pcap`), dir);
  /** Lines of a capture that are IP traffic between nodes (not the API server, not neighbour discovery). */
  const nodeTraffic = (text: string) =>
    text
      .split("\n")
      .filter((l) => / IP6? /.test(l))
      .filter((l) => !l.includes(tb.apiAddress4) && !l.includes(tb.apiAddress6))
      .filter((l) => !/ICMP6, (neighbor|router)/.test(l));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-nd-"));
    tb = await createTestbed({ nodes: 3, api: true });
    await removeWireguardSockets();
    [n1, n2, n3] = tb.nodes as [TestNode, TestNode, TestNode];
    const started = Date.now();
    api = await startApiServer({ dir: join(dir, "api"), netns: tb.apiNs ?? "", address: tb.apiAddress4 });
    results["apiServerStartMs"] = Date.now() - started;
    cluster = new NetdCluster({
      testbed: tb,
      api,
      dir: join(dir, "netd"),
      implementation: o.implementation,
      flags: [`--endpoint-family=${o.endpointFamily}`],
    });
    await cluster.init();
    for (const n of tb.nodes) {
      echoes.push(await startEcho(n.podNs, "udp", UDP_ECHO, dir));
      echoes.push(await startEcho(n.podNs, "tcp", TCP_ECHO, dir));
    }
  }, scaled(180_000));

  afterAll(async () => {
    // For debugging a failure by hand: leave everything running (the next run cleans up).
    if (process.env["CLOAK_KEEP_TESTBED"]) return;
    await cluster?.stopAll();
    for (const e of echoes) await e.stop("SIGKILL");
    await stopSenders();
    await api?.stop();
    await tb?.destroy();
    await removeWireguardSockets();
    // CLOAK_NETD_RESULTS=<dir> keeps the measurements (gaps, MTU) as JSON for the benchmarks.
    const out = process.env["CLOAK_NETD_RESULTS"];
    if (out) {
      await mkdir(out, { recursive: true });
      await writeFile(join(out, `netd-${o.tier}-scenarios.json`), `${JSON.stringify(results, null, 2)}\n`);
    }
    console.log(`netd ${o.tier} tier results: ${JSON.stringify(results)}`);
    if (dir && !process.env["CLOAK_KEEP_TEST_DIR"]) await rm(dir, { recursive: true, force: true });
  }, TEST_TIMEOUT);

  it("control: without netd the underlay carries pod traffic in plain text", async () => {
    const cap = await capture("control");
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, MARKER)).toBe(true);
    const { raw } = await cap.stop();
    expect(raw.includes(Buffer.from(MARKER))).toBe(true);
  }, TEST_TIMEOUT);

  it("joins: each netd publishes its key (0600 file) and the nodes converge", async () => {
    await cluster.createNode(n1);
    await cluster.createNode(n2);
    await cluster.startNetd(n1);
    await cluster.startNetd(n2);
    const d1 = await cluster.waitForPeers(n1, { n2: pods(n2) });
    await cluster.waitForPeers(n2, { n1: pods(n1) });
    const node2 = await cluster.readNode("n2");
    const key2 = node2.metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
    expect(d1.peers[0]?.publicKey).toBe(key2);
    expect(node2.metadata?.annotations?.[PORT_ANNOTATION]).toBe(String(WG_PORT));
    expect(d1.peers[0]?.endpoint).toBe(o.endpointFamily === "ipv6" ? `[${n2.underlay6}]:${WG_PORT}` : `${n2.underlay4}:${WG_PORT}`);
    expect((await cluster.routes(n1)).map((r) => r.dst).sort()).toEqual(pods(n2).sort());
    expect(cluster.netd(n1)?.stdout).toContain(o.implementation === "kernel" ? "kernel module" : "wireguard-go (userspace)");
    // The key is never logged.
    expect(cluster.netd(n1)?.stdout).not.toContain(await cluster.privateKeyFile(n1));
  }, TEST_TIMEOUT);

  it("pod-to-pod across nodes is encrypted: the underlay shows only WireGuard UDP, never the marker", async () => {
    const cap = await capture("encrypted");
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, MARKER)).toBe(true);
    expect(await send(tb, n2.podNs, n1.podIP6, UDP_ECHO, MARKER)).toBe(true);
    const { raw, text } = await cap.stop();
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    const lines = nodeTraffic(text);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(new RegExp(`\\.${WG_PORT}: UDP, length \\d+$`));
  }, TEST_TIMEOUT);

  it("node added: every netd converges on the new peer; status and metrics show it", async () => {
    await cluster.createNode(n3);
    await cluster.startNetd(n3);
    await cluster.waitForPeers(n1, { n2: pods(n2), n3: pods(n3) });
    await cluster.waitForPeers(n2, { n1: pods(n1), n3: pods(n3) });
    await cluster.waitForPeers(n3, { n1: pods(n1), n2: pods(n2) });
    expect(await send(tb, n3.podNs, n1.podIP4, UDP_ECHO, "hello")).toBe(true);
    expect(await send(tb, n2.podNs, n3.podIP6, UDP_ECHO, "hello")).toBe(true);
    // Status and metrics serve the last counters read (1 s after a change of peers, then every
    // 10 s), not a `wg` per request: they show the new peer and its traffic within one read.
    // `status` finds the running agent's address in its state directory.
    const status = await waitFor(
      "n1's status to list n3",
      async () => {
        const s = await cloak(n1, "status", `--state-dir=${cluster.stateDir(n1)}`);
        return /^n3\s/m.test(s.stdout) && s;
      },
      scaled(15_000),
    );
    expect(status.stdout).toMatch(/^n2\s+\S+\s+\d+s ago\s+up/m);
    const metrics = await waitFor(
      "n1's metrics to count bytes sent to n3",
      async () => {
        const m = await httpGet(tb, n1.ns, "http://127.0.0.1:9478/metrics");
        return /^netd_peer_sent_bytes\{node="n3"\} [1-9]/m.test(m.body) && m;
      },
      scaled(15_000),
    );
    expect(metrics.body).toMatch(/^netd_peers_configured 2$/m);
    expect(metrics.body).toMatch(/^netd_peers_connected 2$/m);
    expect(metrics.body).toMatch(/^netd_peer_sent_bytes\{node="n3"\} [1-9]/m);
    expect(metrics.body).toMatch(/^netd_commands_total\{program="wg"\} \d+/m);
    expect((await httpGet(tb, n1.ns, "http://127.0.0.1:9478/healthz")).ok).toBe(true);
    // Loopback only (no NODE_IP here): nothing listens on the node's other addresses.
    const listening = await tb.exec(n1.ns, ["ss", "-Hltn", "sport", "= :9478"]);
    expect(listening.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)[3])).toEqual(["127.0.0.1:9478"]);
    expect((await httpGet(tb, n1.ns, `http://${n1.underlay4}:9478/healthz`)).ok).toBe(false);
  }, TEST_TIMEOUT);

  it("MTU: underlay minus 80 with IPv6 endpoints, minus 60 with IPv4, carries a full-size packet without fragmenting it", async () => {
    const link = await tb.exec(n1.ns, ["ip", "-j", "link", "show", "dev", cluster.iface(n1)]);
    const mtu = (JSON.parse(link.stdout) as Array<{ mtu: number }>)[0]?.mtu ?? 0;
    expect(mtu).toBe(tb.mtu - (o.endpointFamily === "ipv6" ? 80 : 60));
    const cap = await capture("mtu");
    // A datagram whose IP packet is exactly the tunnel MTU (IPv4 inner header 20 + UDP 8).
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, "full-size", mtu - 28)).toBe(true);
    // And one with an IPv6 inner header (40 + 8).
    expect(await send(tb, n1.podNs, n2.podIP6, UDP_ECHO, "full-size-6", mtu - 48)).toBe(true);
    const { text } = await cap.stop();
    const lines = nodeTraffic(text);
    expect(lines.some((l) => /frag/i.test(l))).toBe(false);
    // tcpdump prints the outer UDP payload ("length N"): WireGuard header + padded inner + tag.
    const udpPayloads = lines.map((l) => Number(/UDP, length (\d+)$/.exec(l)?.[1] ?? 0));
    const outerHeader = o.endpointFamily === "ipv6" ? 40 + 8 : 20 + 8;
    const largestOuter = Math.max(...udpPayloads) + outerHeader;
    results["mtu"] = { underlay: tb.mtu, tunnel: mtu, largestOuterPacket: largestOuter, overheadMeasured: largestOuter - mtu };
    // The full-size packet fills the underlay exactly: 80 (IPv6) or 60 (IPv4) is the
    // overhead, padding included (WireGuard never pads past the interface MTU).
    expect(largestOuter).toBe(tb.mtu);
  }, TEST_TIMEOUT);

  it("netd killed and restarted: same key, the test connection never drops", async () => {
    const keyBefore = await cluster.privateKeyFile(n2);
    const annotationBefore = (await cluster.readNode("n2")).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
    const tcp = await startProbe(n1.podNs, "tcp-stream", n2.podIP4, TCP_ECHO, 20, dir);
    const udp = await startProbe(n1.podNs, "udp-probe", n2.podIP4, UDP_ECHO, 10, dir);
    await cluster.stopNetd(n2, "SIGKILL");
    await new Promise((r) => setTimeout(r, 1_000));
    const restarted = Date.now();
    const d = await cluster.startNetd(n2);
    await d.waitForOutput((out) => /"msg":"(in sync|applied changes)"/.test(out), scaled(20_000));
    results["restartToInSyncMs"] = Date.now() - restarted;
    await new Promise((r) => setTimeout(r, 1_000));
    const t = await tcp.stop();
    const u = await udp.stop();
    results["restart"] = { tcp: t, udp: u };
    expect(t.closed).toBe(false);
    expect(t.error).toBeUndefined();
    expect(u.lost).toBe(0);
    expect(await cluster.privateKeyFile(n2)).toBe(keyBefore);
    expect((await cluster.readNode("n2")).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION]).toBe(annotationBefore);
    expect(d.stdout).toContain("loaded private key");
    // Nothing to change after a restart: the interface kept its state.
    expect(d.stdout).not.toMatch(/"peersChanged":[1-9]/);
  }, TEST_TIMEOUT);

  it("key rotated on one node: peers pick it up and traffic resumes; the gap is measured", async () => {
    const before = (await cluster.readNode("n2")).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
    const udp = await startProbe(n1.podNs, "udp-probe", n2.podIP4, UDP_ECHO, 10, dir);
    await new Promise((r) => setTimeout(r, 300));
    await cloak(n2, "rotate-key", `--state-dir=${cluster.stateDir(n2)}`);
    let after: string | undefined;
    await waitFor("the new key on Node n2", async () => {
      after = (await cluster.readNode("n2")).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
      return after !== undefined && after !== before;
    }, scaled(10_000));
    await cluster.waitForPeers(n1, { n2: pods(n2), n3: pods(n3) });
    await waitFor("n1 to use n2's new key", async () => (await cluster.device(n1)).peers.some((p) => p.publicKey === after), 10_000);
    await waitFor("n3 to use n2's new key", async () => (await cluster.device(n3)).peers.some((p) => p.publicKey === after), 10_000);
    await new Promise((r) => setTimeout(r, 1_500));
    const u = await udp.stop();
    results["keyRotation"] = { gapMs: u.maxGapMs, probesLost: u.lost, probeIntervalMs: 10 };
    console.log(`netd ${o.tier}: key rotation gap ${u.maxGapMs} ms (${u.lost} of ${u.sent} probes lost)`);
    expect(u.received).toBeGreaterThan(0);
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, "after rotation")).toBe(true);
    expect(await send(tb, n3.podNs, n2.podIP6, UDP_ECHO, "after rotation")).toBe(true);
    expect((await cluster.device(n1)).peers.some((p) => p.publicKey === before)).toBe(false);
  }, TEST_TIMEOUT);

  it("strict mode (the default): with a peer's key withheld, traffic to its pods is dropped, never sent in plain", async () => {
    // Withhold n3's key: its netd stops and its annotation goes.
    await cluster.stopNetd(n3, "SIGTERM");
    await cluster.core.patchNode(
      { name: "n3", body: { metadata: { annotations: { [PUBLIC_KEY_ANNOTATION]: null, [PORT_ANNOTATION]: null } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await cluster.waitForPeers(n1, { n2: pods(n2) });
    const cap = await capture("strict");
    expect(await send(tb, n1.podNs, n3.podIP4, UDP_ECHO, MARKER, 0, 2_000)).toBe(false);
    expect(await send(tb, n1.podNs, n3.podIP6, UDP_ECHO, MARKER, 0, 2_000)).toBe(false);
    // Traffic to nodes that have keys still flows, encrypted.
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, MARKER)).toBe(true);
    const { raw } = await cap.stop();
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    const rules = await tb.exec(n1.ns, ["nft", "list", "table", "inet", "cloak-netd"]);
    expect(rules.stdout).toMatch(/counter packets [1-9]\d* bytes \d+ drop/);
    // The key comes back: n3's netd republishes it, n1 adds the peer, traffic flows encrypted.
    await cluster.startNetd(n3);
    await cluster.waitForPeers(n1, { n2: pods(n2), n3: pods(n3) });
    expect(await send(tb, n1.podNs, n3.podIP4, UDP_ECHO, "keyed again")).toBe(true);
  }, TEST_TIMEOUT);

  it("strict mode before the first list: a rebooted node drops plain text while the API server is away", async () => {
    // A reboot: netd, its interface and its nftables table are gone; the API server is away.
    await cluster.stopNetd(n1, "SIGKILL");
    await tb.exec(n1.ns, ["ip", "link", "del", cluster.iface(n1)]);
    await tb.exec(n1.ns, ["nft", "delete", "table", "inet", "cloak-netd"]);
    await api.stopApiServer();
    try {
      const cap = await capture("strict-boot");
      // Control: without netd, n1's pod sends in plain text (n2's own strict table drops it there).
      await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, CONTROL_MARKER, 0, 1_000);
      await cluster.startNetd(n1, ["--cluster-cidr=198.51.100.0/24"]);
      const d = cluster.netd(n1);
      await d?.waitForOutput((out) => out.includes("strict table installed before the first list"), scaled(20_000));
      // No Node has been read, yet nothing leaves for a remote pod in plain text.
      expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, `${MARKER}-after`, 0, 2_000)).toBe(false);
      expect(await send(tb, n1.podNs, n2.podIP6, UDP_ECHO, `${MARKER}-after`, 0, 2_000)).toBe(false);
      const { raw } = await cap.stop();
      expect(raw.includes(Buffer.from(CONTROL_MARKER))).toBe(true);
      expect(raw.includes(Buffer.from(`${MARKER}-after`))).toBe(false);
      expect(d?.stdout).not.toContain('"msg":"applied changes"');
    } finally {
      await api.startApiServerAgain();
    }
    await cluster.waitForPeers(n1, { n2: pods(n2), n3: pods(n3) }, scaled(60_000));
    expect(await send(tb, n1.podNs, n2.podIP4, UDP_ECHO, "back")).toBe(true);
  }, TEST_TIMEOUT);

  it("API server goes away and comes back: netd keeps the last good state, then resyncs", async () => {
    const before = await cluster.device(n1);
    // n3's netd is off for this test, so that the change made afterwards stays put.
    await cluster.stopNetd(n3, "SIGTERM");
    await api.stopApiServer();
    // Several resync intervals (5 s) without the API server: nothing is torn down.
    const udp = await startProbe(n1.podNs, "udp-probe", n2.podIP4, UDP_ECHO, 20, dir);
    await new Promise((r) => setTimeout(r, 7_000));
    const during = await cluster.device(n1);
    expect(during.peers.map((p) => p.publicKey).sort()).toEqual(before.peers.map((p) => p.publicKey).sort());
    expect(await send(tb, n1.podNs, n3.podIP4, UDP_ECHO, "api down")).toBe(true);
    await api.startApiServerAgain();
    const u = await udp.stop();
    expect(u.lost).toBe(0);
    expect(cluster.netd(n1)?.stdout).toContain("list/watch failed; keeping the last known objects");
    // Resynced: a change made after the API server is back reaches every netd (a bogus key on
    // n3, which n1 follows and n3's own netd corrects once it runs again).
    const bogus = generateKeyPair().publicKey;
    await cluster.core.patchNode(
      { name: "n3", body: { metadata: { annotations: { [PUBLIC_KEY_ANNOTATION]: bogus } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await waitFor("n1 to follow n3's annotation after the API server came back", async () => (await cluster.device(n1)).peers.some((p) => p.publicKey === bogus), 30_000);
    // n3's netd puts its own key back.
    await cluster.startNetd(n3);
    const key3 = (await cluster.device(n3)).publicKey;
    await waitFor("n3 to republish its key", async () => (await cluster.readNode("n3")).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION] === key3, 30_000);
    await cluster.waitForPeers(n1, { n2: pods(n2), n3: pods(n3) });
    expect(await send(tb, n1.podNs, n3.podIP4, UDP_ECHO, "resynced")).toBe(true);
  }, TEST_TIMEOUT);

  it("node deleted: its peer and routes are gone everywhere", async () => {
    const key3 = (await cluster.device(n3)).publicKey;
    await cluster.deleteNode("n3");
    await cluster.waitForPeers(n1, { n2: pods(n2) });
    await cluster.waitForPeers(n2, { n1: pods(n1) });
    for (const n of [n1, n2]) {
      expect((await cluster.device(n)).peers.some((p) => p.publicKey === key3)).toBe(false);
      const routes = (await cluster.routes(n)).map((r) => r.dst);
      for (const cidr of pods(n3)) expect(routes).not.toContain(cidr);
    }
  }, TEST_TIMEOUT);

  it("a pod CIDR moves to another node: traffic follows it", async () => {
    // n3 is gone; its pod CIDR is given to n2 (re-created, as a replaced node would be), and
    // n2's pod moves into it. n3's pod stops answering, so an echo can only come from n2's.
    await cluster.deleteNode("n2");
    for (const e of echoes.filter((e) => e.o.netns === n3.podNs)) await e.stop("SIGKILL");
    await readdressPod(tb, n2, n3);
    await cluster.createNode(n2, pods(n3));
    await cluster.waitForPeers(n1, { n2: pods(n3) });
    await cluster.waitForPeers(n2, { n1: pods(n1) });
    const moved = Date.now();
    expect(await send(tb, n1.podNs, n3.podIP4, UDP_ECHO, "moved")).toBe(true);
    results["podCIDRMoveFirstEchoMs"] = Date.now() - moved;
    expect(await send(tb, n1.podNs, n3.podIP6, UDP_ECHO, "moved")).toBe(true);
    for (const cidr of pods(n2)) expect((await cluster.routes(n1)).map((r) => r.dst)).not.toContain(cidr);
  }, TEST_TIMEOUT);

  it("cleanup removes everything netd added; a stop alone removes nothing", async () => {
    await cluster.stopNetd(n1, "SIGTERM");
    expect((await cluster.device(n1)).peers.length).toBe(1);
    const cleanup = ["cleanup", `--interface=${cluster.iface(n1)}`, `--state-dir=${cluster.stateDir(n1)}`];
    await cloak(n1, ...cleanup);
    const link = await tb.exec(n1.ns, ["ip", "link", "show", "dev", cluster.iface(n1)], { okExitCodes: [1] });
    expect(link.exitCode).toBe(1);
    expect(await cluster.routes(n1)).toEqual([]);
    const rules = await tb.exec(n1.ns, ["ip", "rule", "show"]);
    expect(rules.stdout).not.toContain("51872");
    const nft = await tb.exec(n1.ns, ["nft", "list", "tables"]);
    expect(nft.stdout).not.toContain("cloak-netd");
    // Running it again finds nothing to do.
    await cloak(n1, ...cleanup);
  }, TEST_TIMEOUT);
}

/** Moves `node`'s pod into `target`'s pod CIDR (same host part), on both families. */
async function readdressPod(tb: Testbed, node: TestNode, target: TestNode): Promise<void> {
  const gw4 = (n: TestNode) => n.podIP4.replace(/\.(\d+)$/, (_, d: string) => `.${Number(d) - 1}`);
  const gw6 = (n: TestNode) => n.podIP6.replace(/::2$/, "::1");
  const ipn = (ns: string, ...args: string[]) => tb.exec(ns, ["ip", ...args]);
  // The kubenet-style route to the CIDR's old node goes, as a route controller would remove it.
  await ipn(node.ns, "route", "del", target.podCIDR4);
  await ipn(node.ns, "-6", "route", "del", target.podCIDR6);
  // Only the pod addresses change; the link-local ones stay (IPv6 neighbour discovery uses them).
  await ipn(node.ns, "addr", "del", `${gw4(node)}/26`, "dev", "pod0");
  await ipn(node.ns, "addr", "del", `${gw6(node)}/64`, "dev", "pod0");
  await ipn(node.ns, "addr", "add", `${gw4(target)}/26`, "dev", "pod0");
  await ipn(node.ns, "addr", "add", `${gw6(target)}/64`, "dev", "pod0", "nodad");
  await ipn(node.podNs, "addr", "del", `${node.podIP4}/26`, "dev", "eth0");
  await ipn(node.podNs, "addr", "del", `${node.podIP6}/64`, "dev", "eth0");
  await ipn(node.podNs, "addr", "add", `${target.podIP4}/26`, "dev", "eth0");
  await ipn(node.podNs, "addr", "add", `${target.podIP6}/64`, "dev", "eth0", "nodad");
  await ipn(node.podNs, "route", "replace", "default", "via", gw4(target));
  await ipn(node.podNs, "-6", "route", "replace", "default", "via", gw6(target));
}

/** wireguard-go's control sockets of this suite's interfaces (shared /var/run/wireguard). */
async function removeWireguardSockets(): Promise<void> {
  for (const name of ["cndwg-n1", "cndwg-n2", "cndwg-n3"]) {
    await rm(`/var/run/wireguard/${name}.sock`, { force: true });
  }
}

