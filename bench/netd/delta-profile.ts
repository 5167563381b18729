import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { pino } from "pino";
import type { Command, CommandResult, Runner } from "../../lib/exec.js";
import type { KubeClient, ListMeta, WatchEvent } from "../../lib/kube/client.js";
import { Agent } from "../../netd/agent.js";
import { parseCommand, V8_FLAGS } from "../../netd/config.js";
import { LinuxDataplane } from "../../netd/dataplane.js";
import { generateKeyPair, writeKeyFile } from "../../netd/keys.js";
import { NetdMetrics } from "../../netd/metrics.js";
import { KubeNodeSource } from "../../netd/node-source.js";
import { median } from "../lib/stats.js";
import { syntheticName, syntheticNode } from "./synthetic-nodes.js";

/**
 * netd's own JavaScript on one Node event at N nodes, without an API server or a kernel: the
 * real KubeNodeSource (reflector, projection) fed by a scripted client, the real Agent and
 * LinuxDataplane with a runner that answers every command at once. Times the watch event →
 * the `wg set` (what bench-netd's "one added node" measures, less the processes and the API
 * server) and → the reconcile's end, for an add and a delete, as bench-netd does them.
 *
 *   node --max-semi-space-size=4 dist/bench/netd/delta-profile.js [nodes=5000] [samples=15]
 *
 * With --cpu-prof the profile shows where the time goes.
 */

const nodes = Number(process.argv[2] ?? 5000);
const samples = Number(process.argv[3] ?? 15);
setFlagsFromString(V8_FLAGS);

const SELF = "bench-self";
const selfAddress = "172.31.255.1";

let onEvent: ((e: WatchEvent) => void) | undefined;
let wgSetAt: number | undefined;
const counts = new Map<string, number>();

const link = JSON.stringify([{ ifname: "cloak-wg0", mtu: 1440, flags: ["UP"], linkinfo: { info_kind: "wireguard" } }]);
const addrs = JSON.stringify([{ ifname: "eth0", mtu: 1500, addr_info: [{ local: selfAddress }] }]);
const runner: Runner = async (c: Command): Promise<CommandResult> => {
  const argv = [c.file, ...c.args].join(" ");
  const program = c.file === "ip" && c.args[0] === "-batch" ? "ip -batch" : c.file === "wg" ? `wg ${c.args[0] ?? ""}` : c.file === "nft" ? `nft ${c.args.includes("-f") ? "-f" : "list"}` : `ip ${c.args.slice(0, 4).join(" ")}`;
  counts.set(program, (counts.get(program) ?? 0) + 1);
  const ok = (stdout = ""): CommandResult => ({ exitCode: 0, stdout, stderr: "" });
  if (c.file === "wg" && c.args[0] === "set") {
    wgSetAt ??= performance.now();
    return ok();
  }
  if (c.file === "wg") return ok(`(hidden)\t${"A".repeat(43)}=\t51872\toff\n`);
  if (c.file === "nft" && c.args.includes("list")) return { exitCode: 1, stdout: "", stderr: "Error: No such file or directory" };
  if (argv.includes("link show")) return ok(link);
  if (argv.includes("addr")) return ok(addrs);
  if (argv.includes("route show") || argv.includes("rule show")) return ok("[]");
  return ok();
};

const dir = await mkdtemp(join(tmpdir(), "cloak-netd-delta-profile-"));
try {
  const keys = generateKeyPair();
  await writeKeyFile(join(dir, "private.key"), keys.privateKey);
  const self = syntheticNode(0, keys.publicKey, { dualStack: false });
  self.metadata = { ...self.metadata, name: SELF };
  self.status = { ...self.status, addresses: [{ type: "InternalIP", address: selfAddress }] };
  self.spec = { podCIDR: "10.127.255.0/24", podCIDRs: ["10.127.255.0/24"] };
  // What the API server sends: JSON text, parsed by the client (as client.ts does).
  const wire = (i: number) => JSON.stringify(syntheticNode(i, generateKeyPair().publicKey, { dualStack: false }));
  const items = [JSON.stringify(self), ...Array.from({ length: nodes - 1 }, (_, i) => wire(i + 1))];

  const client = {
    async list(_path: string, _query: unknown, onItem: (item: unknown) => void): Promise<ListMeta> {
      for (const item of items) onItem(JSON.parse(item));
      return { resourceVersion: "1", continue: undefined, items: items.length };
    },
    watch: (_path: string, _query: unknown, handler: (e: WatchEvent) => void, o: { signal?: AbortSignal }) =>
      new Promise<void>((resolve) => {
        onEvent = handler;
        o.signal?.addEventListener("abort", () => resolve(), { once: true });
      }),
    mergePatch: async () => ({}),
    close: () => undefined,
  };
  const logger = pino({ level: "debug" }, pino.destination({ dest: "/dev/null", sync: true }));
  const { config } = parseCommand(["run", `--node-name=${SELF}`, `--state-dir=${dir}`, "--endpoint-family=ipv4", "--resync-interval=3600", "--metrics-address="], {});
  const metrics = new NetdMetrics();
  const source = new KubeNodeSource(client as unknown as KubeClient, logger);
  const dataplane = new LinuxDataplane({ ...config, runner: metrics.countingRunner(runner), logger, iface: config.iface, nftTable: config.nftTable });
  const agent = new Agent({ config, nodes: source, dataplane, logger, metrics, statsIntervalMs: 3_600_000 });
  const listStart = performance.now();
  await agent.start();
  for (let waited = 0; !agent.healthy || onEvent === undefined; waited += 5) {
    if (waited > 30_000) throw new Error(`not converged: ${JSON.stringify({ healthy: agent.healthy, watching: onEvent !== undefined, error: agent.status().lastError, synced: agent.status().synced })}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await agent.settled();
  process.stderr.write(`list + full reconcile of ${nodes} nodes: ${(performance.now() - listStart).toFixed(0)} ms\n`);

  const sample = async (type: "ADDED" | "DELETED", i: number): Promise<{ wg: number; done: number }> => {
    const text = JSON.stringify({ type, object: JSON.parse(wire(i)) });
    counts.clear();
    wgSetAt = undefined;
    const t0 = performance.now();
    const e = JSON.parse(text) as { type: string; object: unknown };
    onEvent?.({ type: e.type, object: e.object });
    await agent.settled();
    const done = performance.now() - t0;
    if (wgSetAt === undefined) throw new Error(`${type} node ${i}: no wg set`);
    return { wg: wgSetAt - t0, done };
  };
  const added: Array<{ wg: number; done: number }> = [];
  const removed: Array<{ wg: number; done: number }> = [];
  for (let k = 0; k < samples; k++) {
    const i = 15_000 + k; // past the listed nodes' indexes (a synthetic index is < 16 384)
    added.push(await sample("ADDED", i));
    const commandsPerAdd = [...counts].map(([p, n]) => `${p}×${n}`).join(" ");
    removed.push(await sample("DELETED", i));
    if (k === 0) process.stderr.write(`commands per add: ${commandsPerAdd}\n`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const fmt = (xs: number[]) => `p50 ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
  process.stdout.write(
    `${nodes} nodes, ${samples} samples each (${syntheticName(1)}…):\n` +
      `  add:    event → wg set ${fmt(added.map((s) => s.wg))}; → reconcile done ${fmt(added.map((s) => s.done))}\n` +
      `  delete: event → wg set ${fmt(removed.map((s) => s.wg))}; → reconcile done ${fmt(removed.map((s) => s.done))}\n`,
  );
  await agent.stop();
} finally {
  await rm(dir, { recursive: true, force: true });
}
