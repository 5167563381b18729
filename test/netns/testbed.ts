import { readFile, rm, writeFile } from "node:fs/promises";
import { createRunner, type CommandResult, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";

/**
 * A small cluster made of network namespaces, like kubenet's: one underlay bridge (in a
 * namespace of its own, so that nothing touches this machine's interfaces), N nodes each with
 * an underlay address, and behind each node a "pod" namespace on a veth with an address from
 * that node's pod CIDR; plain routes between nodes. Optionally an "api" namespace on the same
 * bridge for the API server. Addresses are documentation ranges and a ULA only:
 *
 *   underlay   192.0.2.0/24        fd00:cd::/64        node i: .1i / ::1i, api: .100 / ::100
 *   pods       198.51.100.0/24     fd00:cd:<i>::/64    node i: 198.51.100.(64·(i-1))/26
 *
 * Every name starts with the prefix (default "cloak-nd-"); creating a testbed first waits for
 * any other live run with the same prefix, then deletes whatever a crashed earlier run left.
 */

export interface TestNode {
  readonly name: string;
  /** The node's namespace (its "host" network). */
  readonly ns: string;
  /** The pod namespace behind it. */
  readonly podNs: string;
  readonly underlay4: string;
  readonly underlay6: string;
  readonly podCIDR4: string;
  readonly podCIDR6: string;
  readonly podIP4: string;
  readonly podIP6: string;
}

export interface TestbedOptions {
  readonly nodes: number;
  /** Also make "<prefix>api" on the bridge (192.0.2.100, fd00:cd::100). */
  readonly api?: boolean;
  readonly prefix?: string;
  /** Underlay MTU (default 1500). */
  readonly mtu?: number;
  /** Add kubenet-style routes between nodes' pod CIDRs (default true). */
  readonly podRoutes?: boolean;
  readonly runner?: Runner;
}

export interface Testbed {
  readonly prefix: string;
  readonly nodes: readonly TestNode[];
  /** The underlay's namespace; its bridge is "br0". */
  readonly underlayNs: string;
  readonly apiNs: string | undefined;
  readonly apiAddress4: string;
  readonly apiAddress6: string;
  readonly mtu: number;
  /** Runs a command in a namespace; throws on failure unless `okExitCodes` says otherwise. */
  exec(ns: string, argv: readonly string[], options?: { input?: string; okExitCodes?: number[]; timeoutMs?: number }): Promise<CommandResult>;
  destroy(): Promise<void>;
}

export const DEFAULT_PREFIX = "cloak-nd-";

export function nodeAddresses(i: number, prefix = DEFAULT_PREFIX): TestNode {
  const base = 64 * (i - 1);
  return {
    name: `n${i}`,
    ns: `${prefix}n${i}`,
    podNs: `${prefix}n${i}p`,
    underlay4: `192.0.2.${10 + i}`,
    underlay6: `fd00:cd::${10 + i}`,
    podCIDR4: `198.51.100.${base}/26`,
    podCIDR6: `fd00:cd:${i}::/64`,
    podIP4: `198.51.100.${base + 2}`,
    podIP6: `fd00:cd:${i}::2`,
  };
}

function defaultRunner(): Runner {
  return createRunner({ logger: createLogger({ component: "testbed", level: process.env["LOG_LEVEL"] ?? "warn" }) });
}

/** Deletes every namespace named with `prefix`, killing what runs inside first. */
export async function removeLeftovers(prefix = DEFAULT_PREFIX, runner: Runner = defaultRunner()): Promise<string[]> {
  const list = await runner({ file: "ip", args: ["netns", "list"] });
  const names = list.stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(prefix));
  for (const ns of names) await deleteNamespace(runner, ns);
  return names;
}

async function deleteNamespace(runner: Runner, ns: string): Promise<void> {
  const pids = await runner({ file: "ip", args: ["netns", "pids", ns], okExitCodes: [1, 255] });
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
  await runner({ file: "ip", args: ["netns", "delete", ns], okExitCodes: [1, 255] });
}

/**
 * One testbed per prefix on a machine at a time: a second run (another developer's `make
 * test`, CI) waits for the first instead of deleting its namespaces as leftovers. The owner's
 * pid is in /run; a file whose process is gone is a crashed run's, and is taken over.
 */
async function acquire(prefix: string, timeoutMs: number): Promise<() => Promise<void>> {
  const path = `/run/${prefix}testbed.pid`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx" });
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (!alive(owner) || owner === process.pid) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another test run (pid ${owner}) holds the ${prefix} testbed (${path})`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function createTestbed(o: TestbedOptions): Promise<Testbed> {
  const runner = o.runner ?? defaultRunner();
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const release = await acquire(prefix, 20 * 60_000);
  // What a crashed earlier run left (its owner is gone, or we would still be waiting).
  await removeLeftovers(prefix, runner);
  const mtu = o.mtu ?? 1500;
  const nodes = Array.from({ length: o.nodes }, (_, i) => nodeAddresses(i + 1, prefix));
  const underlayNs = `${prefix}ul`;
  const apiNs = o.api ? `${prefix}api` : undefined;
  const created: string[] = [];

  const ip = (args: string[], input?: string) =>
    runner({ file: "ip", args, ...(input === undefined ? {} : { input }) });
  const exec: Testbed["exec"] = (ns, argv, options) =>
    runner({
      file: "ip",
      args: ["netns", "exec", ns, ...argv],
      ...(options?.input === undefined ? {} : { input: options.input }),
      ...(options?.okExitCodes ? { okExitCodes: options.okExitCodes } : {}),
      ...(options?.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    });
  const sysctl = (ns: string, ...settings: string[]) => exec(ns, ["sysctl", "-q", "-w", ...settings]);
  const addNs = async (ns: string) => {
    await ip(["netns", "add", ns]);
    created.push(ns);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
  };
  /** A host on the bridge: eth0 in `ns`, its peer `port` enslaved to br0. */
  const attach = async (ns: string, port: string, a4: string, a6: string) => {
    await ip(["-n", ns, "link", "add", "eth0", "mtu", String(mtu), "type", "veth", "peer", "name", port, "netns", underlayNs]);
    await ip(["-n", underlayNs, "link", "set", port, "mtu", String(mtu), "master", "br0", "up"]);
    await ip(["-n", ns, "addr", "add", `${a4}/24`, "dev", "eth0"]);
    await ip(["-n", ns, "addr", "add", `${a6}/64`, "dev", "eth0", "nodad"]);
    await ip(["-n", ns, "link", "set", "eth0", "up"]);
  };

  try {
    await addNs(underlayNs);
    await ip(["-n", underlayNs, "link", "add", "br0", "mtu", String(mtu), "type", "bridge"]);
    await ip(["-n", underlayNs, "link", "set", "br0", "up"]);
    // The bridge forwards only; no netfilter on bridged frames (br_netfilter may be loaded).
    for (const n of nodes) {
      await addNs(n.ns);
      await addNs(n.podNs);
      await attach(n.ns, n.name, n.underlay4, n.underlay6);
      await sysctl(n.ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      await ip(["-n", n.ns, "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", n.podNs]);
      const gw4 = n.podIP4.replace(/\.(\d+)$/, (_, d: string) => `.${Number(d) - 1}`);
      const gw6 = n.podIP6.replace(/::2$/, "::1");
      await ip(["-n", n.ns, "addr", "add", `${gw4}/26`, "dev", "pod0"]);
      await ip(["-n", n.ns, "addr", "add", `${gw6}/64`, "dev", "pod0", "nodad"]);
      await ip(["-n", n.ns, "link", "set", "pod0", "up"]);
      await ip(["-n", n.podNs, "addr", "add", `${n.podIP4}/26`, "dev", "eth0"]);
      await ip(["-n", n.podNs, "addr", "add", `${n.podIP6}/64`, "dev", "eth0", "nodad"]);
      await ip(["-n", n.podNs, "link", "set", "eth0", "up"]);
      await ip(["-n", n.podNs, "route", "add", "default", "via", gw4]);
      await ip(["-n", n.podNs, "-6", "route", "add", "default", "via", gw6]);
    }
    if (apiNs) {
      await addNs(apiNs);
      await attach(apiNs, "api", "192.0.2.100", "fd00:cd::100");
    }
    if (o.podRoutes ?? true) {
      for (const n of nodes) {
        for (const other of nodes.filter((x) => x !== n)) {
          await ip(["-n", n.ns, "route", "add", other.podCIDR4, "via", other.underlay4]);
          await ip(["-n", n.ns, "-6", "route", "add", other.podCIDR6, "via", other.underlay6]);
        }
      }
    }
  } catch (err) {
    for (const ns of created.reverse()) await deleteNamespace(runner, ns);
    await release();
    throw err;
  }

  return {
    prefix,
    nodes,
    underlayNs,
    apiNs,
    apiAddress4: "192.0.2.100",
    apiAddress6: "fd00:cd::100",
    mtu,
    exec,
    destroy: async () => {
      for (const ns of created.reverse()) await deleteNamespace(runner, ns);
      await release();
    },
  };
}
