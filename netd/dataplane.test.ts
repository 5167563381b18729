import { describe, expect, it } from "vitest";
import type { Command, CommandResult, Runner } from "../lib/exec.js";
import { createLogger } from "../lib/log.js";
import { Dataplane } from "./dataplane.js";
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

  runner: Runner = async (c: Command): Promise<CommandResult> => {
    const argv = [c.file, ...c.args].join(" ");
    const ok = (stdout = ""): CommandResult => ({ exitCode: 0, stdout, stderr: "" });
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

function dataplane(k: FakeKernel): Dataplane {
  return new Dataplane({
    runner: k.runner,
    logger: createLogger({ component: "netd-test", level: "silent" }),
    iface: "w0",
    listenPort: 51872,
    fwmark: 0xc10000,
    fwmask: 0xff0000,
    table: 51872,
    rulePriority: 5172,
    implementation: "kernel",
    wireguardGo: "wireguard-go",
    nftTable: "cloak-netd",
  });
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
