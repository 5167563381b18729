import { describe, expect, it } from "vitest";
import type { Command, CommandResult, Runner } from "../lib/exec.js";
import { createLogger } from "../lib/log.js";
import { LinuxDataplane } from "./dataplane.js";
import type { Plan } from "./plan.js";

/**
 * The effects layer against a fake `wg`/`ip`/`nft` that keeps state like the real ones: what
 * gets run for a first sync, for a change, and for nothing. (The real tools run in the host
 * and VM tiers; this pins the number of invocations, which must not grow with the cluster.)
 */
class FakeKernel {
  peers = new Map<string, string[]>();
  publicKey: string | undefined;
  routes = new Set<string>();
  rules = 0;
  writes: string[] = [];
  reads = 0;
  failNextWrite = false;

  runner: Runner = async (c: Command): Promise<CommandResult> => {
    const argv = [c.file, ...c.args].join(" ");
    const ok = (stdout = ""): CommandResult => ({ exitCode: 0, stdout, stderr: "" });
    if (/ (show|list) /.test(` ${c.args.join(" ")} `)) this.reads++;
    else if (this.failNextWrite) {
      this.failNextWrite = false;
      throw new Error(`${c.file} failed`);
    }
    if (argv.startsWith("nft -j list")) return { exitCode: 1, stdout: "", stderr: "Error: No such file or directory" };
    if (argv.startsWith("wg show")) {
      const peers = [...this.peers].map(([k, ips]) => `${k}\t(none)\t192.0.2.1:51872\t${ips.join(",") || "(none)"}\t0\t0\t0\toff`);
      return ok([`PRIV\t${this.publicKey ?? "(none)"}\t51872\t0xc10000`, ...peers].join("\n"));
    }
    if (argv.startsWith("ip -j -4 route show") || argv.startsWith("ip -j -6 route show")) {
      const fam = argv.includes("-6") ? ":" : ".";
      return ok(JSON.stringify([...this.routes].filter((r) => r.includes(fam)).map((dst) => ({ dst, dev: "w0" }))));
    }
    if (argv.startsWith("ip -j -4 rule show") || argv.startsWith("ip -j -6 rule show")) {
      return ok(JSON.stringify(this.rules > 0 ? [{ priority: 5172, not: null, fwmark: "0xc10000", fwmask: "0xff0000", table: "51872" }] : []));
    }
    this.writes.push(c.file === "ip" && c.args[0] === "-batch" ? `ip -batch ${String(c.input).trim().split("\n").length}` : argv.split(" ").slice(0, 3).join(" "));
    if (c.file === "wg" && c.args[0] === "set") {
      for (let i = 2; i < c.args.length; i++) {
        if (c.args[i] === "private-key") this.publicKey = "SELF=";
        if (c.args[i] !== "peer") continue;
        const key = c.args[i + 1] ?? "";
        if (c.args[i + 2] === "remove") this.peers.delete(key);
        else this.peers.set(key, (c.args[c.args.indexOf("allowed-ips", i) + 1] ?? "").split(",").filter(Boolean));
      }
    }
    if (c.file === "ip" && c.args[0] === "-batch") {
      for (const line of String(c.input).trim().split("\n")) {
        const [, op, dst = ""] = line.split(" ");
        if (op === "replace") this.routes.add(dst);
        else this.routes.delete(dst);
      }
    }
    if (c.file === "ip" && c.args.includes("rule")) this.rules++;
    return ok();
  };
}

function planFor(n: number): Plan {
  const peers = Array.from({ length: n }, (_, i) => ({
    node: `n${i}`,
    publicKey: `K${i}=`,
    endpoint: "192.0.2.1:51872",
    allowedIPs: [`10.${i >> 8}.${i & 255}.0/24`],
    persistentKeepalive: undefined,
  }));
  return { peers, routes: peers.flatMap((p) => p.allowedIPs).sort(), strict: undefined, self: undefined, skipped: [], conflicts: [] };
}

const dataplaneOptions = {
  logger: createLogger({ component: "netd-test", level: "silent" }),
  iface: "w0",
  listenPort: 51872,
  fwmark: 0xc10000,
  fwmask: 0xff0000,
  table: 51872,
  rulePriority: 5172,
  implementation: "kernel" as const,
  wireguardGo: "wireguard-go",
  nftTable: "cloak-netd",
};

function dataplane(k: FakeKernel): LinuxDataplane {
  return new LinuxDataplane({ ...dataplaneOptions, runner: k.runner });
}

const keys = { privateKey: "PRIV", publicKey: "SELF=", file: "/k" };

describe("Dataplane.apply", () => {
  it("first sync: one wg set, one ip batch, the two rules", async () => {
    const k = new FakeKernel();
    await dataplane(k).apply(planFor(3), keys, false);
    expect(k.writes).toEqual(["wg set w0", "ip -batch 3", "ip -4 rule", "ip -6 rule"]);
    expect(k.peers.size).toBe(3);
  });

  it("in sync: writes nothing", async () => {
    const k = new FakeKernel();
    await dataplane(k).apply(planFor(3), keys, false);
    k.writes = [];
    const r = await dataplane(k).apply(planFor(3), keys, false);
    expect(k.writes).toEqual([]);
    expect(r).toMatchObject({ peersChanged: 0, routesChanged: 0, rulesChanged: 0, keyChanged: false });
  });

  it.each([10, 2500])("one added node among %i costs one wg set and one ip batch", async (n) => {
    const k = new FakeKernel();
    await dataplane(k).apply(planFor(n), keys, false);
    k.writes = [];
    await dataplane(k).apply(planFor(n + 1), keys, false);
    expect(k.writes).toEqual(["wg set w0", "ip -batch 1"]);
  });

  it("a first sync of thousands of peers is split into bounded wg invocations", async () => {
    const k = new FakeKernel();
    await dataplane(k).apply(planFor(2500), keys, false);
    expect(k.writes.filter((w) => w === "wg set w0")).toHaveLength(3);
    expect(k.peers.size).toBe(2500);
  });
});

describe("Dataplane.apply, delta", () => {
  it.each([10, 2500])("one added node among %i after a full apply reads nothing back: one wg set, one ip batch", async (n) => {
    const k = new FakeKernel();
    const d = dataplane(k);
    await d.apply(planFor(n), keys, false);
    k.writes = [];
    k.reads = 0;
    const r = await d.apply(planFor(n + 1), keys, false, "delta");
    expect({ writes: k.writes, reads: k.reads, mode: r.mode, device: r.device }).toEqual({ writes: ["wg set w0", "ip -batch 1"], reads: 0, mode: "delta", device: undefined });
    expect(k.peers.size).toBe(n + 1);
    expect(k.routes.size).toBe(n + 1);
  });

  it("a removed node loses its peer and route", async () => {
    const k = new FakeKernel();
    const d = dataplane(k);
    await d.apply(planFor(5), keys, false);
    await d.apply(planFor(4), keys, false, "delta");
    expect([k.peers.size, k.routes.size]).toEqual([4, 4]);
  });

  it("with nothing applied before, compares with the live state", async () => {
    const k = new FakeKernel();
    await dataplane(k).apply(planFor(3), keys, false);
    const r = await dataplane(k).apply(planFor(3), keys, false, "delta");
    expect(r.mode).toBe("full");
  });

  it("after a failed apply, compares with the live state", async () => {
    const k = new FakeKernel();
    const d = dataplane(k);
    await d.apply(planFor(3), keys, false);
    k.failNextWrite = true;
    await expect(d.apply(planFor(4), keys, false, "delta")).rejects.toThrow(/failed/);
    const r = await d.apply(planFor(4), keys, false, "delta");
    expect(r.mode).toBe("full");
    expect(k.peers.size).toBe(4);
  });

  it("a peer removed behind netd's back stays gone after a delta and is restored by the next full apply", async () => {
    const k = new FakeKernel();
    const d = dataplane(k);
    await d.apply(planFor(3), keys, false);
    k.peers.delete("K1=");
    await d.apply(planFor(3), keys, false, "delta");
    expect(k.peers.has("K1=")).toBe(false);
    const r = await d.apply(planFor(3), keys, false, "full");
    expect(r.peersChanged).toBe(1);
    expect(k.peers.has("K1=")).toBe(true);
  });

  it("in strict mode a node's CIDR joins the drop sets as one element, after its peer and route", async () => {
    const k = new FakeKernel();
    const strictPlan = (n: number): Plan => {
      const p = planFor(n);
      return { ...p, strict: { strict: p.routes, local: ["192.0.2.0/24"] } };
    };
    const inputs: string[] = [];
    const runner = k.runner;
    k.runner = async (c) => {
      if (c.file === "nft" && c.args[0] === "-f") inputs.push(String(c.input));
      return runner(c);
    };
    const dp = new LinuxDataplane({ ...dataplaneOptions, runner: (c) => k.runner(c) });
    await dp.apply(strictPlan(3), keys, true);
    expect(inputs[0]).toContain("table inet cloak-netd {");
    k.writes = [];
    await dp.apply(strictPlan(4), keys, true, "delta");
    expect(k.writes).toEqual(["wg set w0", "ip -batch 1", "nft -f -"]);
    expect(inputs[1]).toBe("add element inet cloak-netd strict4 { 10.0.3.0/24 }\n");
  });
});
