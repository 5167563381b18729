import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { DEFAULTS as NETD_DEFAULTS } from "../../netd/config.js";
import { PRODUCT_DIRS, runtimeDependencies, scanProductSources, type SourceScan } from "./source-scan.js";
import { testRunner } from "./kube.js";

// No image can be built here (no container engine). What can be checked is that the Dockerfile
// installs everything the code needs: every program any lib/exec Command names, found by the
// TypeScript compiler in the product sources, must come from a Debian package the runtime stage
// installs or from the base image (Debian's Essential packages). Programs are mapped to their
// package with this Debian 12 machine's own dpkg database — the release the image is built on.

/**
 * `file` values that are not compile-time constants, with the program they name by default.
 * A new one fails the test until it is explained here.
 */
const DYNAMIC_PROGRAMS: Record<string, string> = {
  // --wireguard-go PATH, default "wireguard-go".
  "netd/dataplane.ts: this.o.wireguardGo": NETD_DEFAULTS.wireguardGo,
};

const dockerfile = readFileSync(join(packageRoot(), "Dockerfile"), "utf8");

interface RuntimeStage {
  readonly from: string;
  readonly aptPackages: readonly string[];
  readonly entrypoint: readonly string[];
  readonly copies: readonly string[];
}

/** The last stage of the Dockerfile: its base, apt-get install list, ENTRYPOINT and COPYs. */
function runtimeStage(text: string): RuntimeStage {
  const joined = text.replace(/\\\n/g, " ");
  const lines = joined.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  const args = new Map<string, string>();
  for (const l of lines) {
    const m = /^ARG\s+(\w+)=(\S+)/.exec(l);
    if (m?.[1] && m[2]) args.set(m[1], m[2]);
  }
  const fromIndexes = lines.flatMap((l, i) => (/^FROM\s/i.test(l) ? [i] : []));
  const all = lines.slice(fromIndexes[fromIndexes.length - 1] ?? 0);
  const fromLine = all[0] ?? "";
  const from = (fromLine.split(/\s+/)[1] ?? "").replace(/^\$\{(\w+)\}$/, (_, n: string) => args.get(n) ?? "");
  const aptPackages = all
    .filter((l) => l.startsWith("RUN") && l.includes("apt-get install"))
    .flatMap((l) => (l.split("apt-get install")[1] ?? "").split("&&")[0]?.trim().split(/\s+/) ?? [])
    .filter((w) => w !== "" && !w.startsWith("-"));
  const entry = all.find((l) => l.startsWith("ENTRYPOINT"));
  const entrypoint = entry ? (JSON.parse(entry.slice("ENTRYPOINT".length).trim()) as string[]) : [];
  return { from, aptPackages, entrypoint, copies: all.filter((l) => l.startsWith("COPY")) };
}

/** The Debian packages that own `programs` on this machine (one dpkg query for all). */
async function owningPackages(programs: readonly string[]): Promise<Map<string, { path: string; pkg: string }>> {
  // Debian 12 is merged-/usr, but dpkg records the paths packages ship (/sbin/losetup).
  const candidates = programs.flatMap((program) => ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map((d) => ({ program, path: join(d, program) })));
  for (const program of programs) {
    if (!candidates.some((c) => c.program === program && existsSync(c.path))) {
      throw new Error(`${program} is not installed on this machine, so its package cannot be looked up (make deploy-deps installs what the image installs)`);
    }
  }
  // Exit status 1 when some paths are not owned by any package (the other three spellings).
  const r = await testRunner()({ file: "dpkg-query", args: ["-S", ...candidates.map((c) => c.path)], okExitCodes: [1] });
  const owners = new Map<string, string>();
  for (const line of r.stdout.split("\n")) {
    const [pkgs, path] = line.split(": ");
    if (pkgs && path) owners.set(path, pkgs.split(",")[0]?.split(":")[0]?.trim() ?? "");
  }
  const found = new Map<string, { path: string; pkg: string }>();
  for (const c of candidates) {
    const pkg = owners.get(c.path);
    if (pkg && !found.has(c.program)) found.set(c.program, { path: c.path, pkg });
  }
  const unowned = programs.filter((p) => !found.has(p));
  if (unowned.length > 0) throw new Error(`no Debian package owns ${unowned.join(", ")}`);
  return found;
}

async function isEssential(pkg: string): Promise<boolean> {
  const r = await testRunner()({ file: "dpkg-query", args: ["-W", "-f=${Essential}", pkg], okExitCodes: [1] });
  return r.stdout.trim() === "yes";
}

describe("the image (Dockerfile)", () => {
  const stage = runtimeStage(dockerfile);
  let scan: SourceScan;
  const getScan = () => (scan ??= scanProductSources());

  it("finds the commands in the product sources", () => {
    const s = getScan();
    expect(s.files).toBeGreaterThan(50);
    // Sanity: the scan sees what the code is known to run, through constants and helpers alike.
    const programs = new Set(s.commands.flatMap((c) => c.programs));
    for (const known of ["cryptsetup", "losetup", "mkfs.ext4", "wg", "nft", "ip"]) expect(programs).toContain(known);
  }, 60_000);

  it("explains every command whose program is not a constant", () => {
    const dynamic = getScan()
      .commands.filter((c) => c.dynamic !== undefined)
      .map((c) => `${c.where.split(":")[0]}: ${c.dynamic}`);
    expect(dynamic.filter((d) => !(d in DYNAMIC_PROGRAMS))).toEqual([]);
    expect(dynamic.length).toBeGreaterThan(0);
  }, 60_000);

  it("installs, or has in its base, the package of every program the code runs", async () => {
    const s = getScan();
    const programs = new Set([
      ...s.commands.flatMap((c) => c.programs),
      ...s.commands.flatMap((c) => (c.dynamic ? [DYNAMIC_PROGRAMS[`${c.where.split(":")[0]}: ${c.dynamic}`] ?? ""] : [])),
    ]);
    programs.delete("");
    const table: string[] = [];
    const missing: string[] = [];
    const owners = await owningPackages([...programs].sort());
    for (const [program, { path, pkg }] of owners) {
      const installed = stage.aptPackages.includes(pkg);
      const essential = !installed && (await isEssential(pkg));
      table.push(`${program.padEnd(14)} ${path.padEnd(24)} ${pkg.padEnd(16)} ${installed ? "installed" : essential ? "base image (Essential)" : "MISSING"}`);
      if (!installed && !essential) missing.push(`${program} (package ${pkg})`);
    }
    console.log(`programs the code runs → Debian packages:\n${table.join("\n")}`);
    expect(missing).toEqual([]);
  }, 120_000);

  it("runs under tini from an installed package, on Node 24 / Debian 12 slim as package.json pins", async () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { devDependencies: Record<string, string> };
    expect(stage.from).toBe(`node:${pkg.devDependencies["node"]}-bookworm-slim`);
    const init = stage.entrypoint[0] ?? "";
    expect(init).toBe("/usr/bin/tini");
    expect(stage.aptPackages).toContain((await owningPackages(["tini"])).get("tini")?.pkg);
    expect(stage.entrypoint.slice(2)).toEqual(["node", "/opt/cloak/dist/cmd/cloak.js"]);
  });

  it("ships every package the code imports at run time, and every directory it imports from", () => {
    const s = getScan();
    const deps = runtimeDependencies();
    const undeclared = [...s.packages.keys()].filter((p) => !deps.has(p));
    // `npm ci --omit=dev` installs dependencies only: a devDependency imported at run time breaks.
    expect(undeclared).toEqual([]);
    expect(s.outsideImports).toEqual([]);
    const buildStage = dockerfile.slice(0, dockerfile.lastIndexOf("\nFROM "));
    for (const dir of [...PRODUCT_DIRS, "proto"]) expect(buildStage).toMatch(new RegExp(`^COPY ${dir}/ ${dir}/$`, "m"));
    expect(stage.copies.join("\n")).toContain("proto/*.proto proto/loader-options.json proto/");
  }, 60_000);
});
