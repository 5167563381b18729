import { describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { DEFAULTS as NETD_DEFAULTS } from "../../netd/config.js";
import { PRODUCT_DIRS, runtimeDependencies, scanProductSources, type SourceScan } from "./source-scan.js";
import { testRunner } from "./kube.js";

// The Dockerfile cannot be built here (no container engine). What can be checked is that it
// installs everything the code needs: every program any lib/exec Command names, found by the
// TypeScript compiler in the product sources, must come from a Debian package the runtime stage
// installs or from the base image (Debian's Essential packages). Programs are mapped to their
// package with this Debian 12 machine's own dpkg database — the release the image is built on.
// `make image` (scripts/image/build.sh) builds the same image without Docker; the second part
// keeps the two in step: packages, Node, entrypoint, command, user, directory, environment, and
// the archive it wrote (test-deploy depends on `image`).

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
  readonly cmd: readonly string[];
  readonly workdir: string;
  readonly env: readonly string[];
  /** "" when the stage sets none (root). */
  readonly user: string;
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
  const json = (instruction: string) => {
    const line = all.find((l) => l.startsWith(`${instruction} `));
    return line ? (JSON.parse(line.slice(instruction.length).trim()) as string[]) : [];
  };
  const last = (instruction: string) => all.filter((l) => l.startsWith(`${instruction} `)).pop()?.slice(instruction.length).trim() ?? "";
  return {
    from,
    aptPackages,
    entrypoint: json("ENTRYPOINT"),
    cmd: json("CMD"),
    workdir: last("WORKDIR"),
    env: all.filter((l) => l.startsWith("ENV ")).map((l) => l.slice(4).trim()),
    user: last("USER"),
    copies: all.filter((l) => l.startsWith("COPY")),
  };
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

interface OciImage {
  /** index.json: one entry per name, all naming the same manifest. */
  readonly index: { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  readonly manifest: { config: { digest: string }; layers: Array<{ digest: string }> };
  readonly config: { config: { Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string; Env?: string[]; User?: string } };
  /** A file from layer `n` (a tar inside the archive's tar, read with tar). */
  readonly layerFile: (n: number, path: string) => Promise<string>;
}

/** The OCI image-layout archive at `archive`: its index, first manifest and config. */
async function readOciArchive(archive: string): Promise<OciImage> {
  const run = testRunner();
  const read = async (member: string) => (await run({ file: "tar", args: ["-xOf", archive, member], timeoutMs: 60_000 })).stdout;
  const blob = (digest: string | undefined) => `blobs/sha256/${(digest ?? "").replace(/^sha256:/, "")}`;
  const index = JSON.parse(await read("index.json")) as OciImage["index"];
  const manifest = JSON.parse(await read(blob(index.manifests[0]?.digest))) as OciImage["manifest"];
  const config = JSON.parse(await read(blob(manifest.config.digest))) as OciImage["config"];
  const layerFile = async (n: number, path: string) =>
    (await run({ file: "bash", args: ["-c", 'tar -xOf "$1" "$2" | tar -xO "$3"', "-", archive, blob(manifest.layers[n]?.digest), path], timeoutMs: 120_000 })).stdout;
  return { index, manifest, config, layerFile };
}

/** What scripts/image/build.sh (`make image`, no Docker) puts in the image it builds. */
interface ImageBuild {
  readonly name: string;
  readonly node: string;
  readonly packages: readonly string[];
  readonly baseExtras: readonly string[];
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly workdir: string;
  readonly user: string;
}

describe("the image built without Docker (make image) and the Dockerfile's", () => {
  const stage = runtimeStage(dockerfile);
  const script = join(packageRoot(), "scripts/image/build.sh");
  // Each asked once for the whole block (a shell and jq under load, a scan of the 230 MB archive).
  let configOnce: Promise<ImageBuild> | undefined;
  const config = () => (configOnce ??= testRunner()({ file: script, args: ["--print-config"] }).then((r) => JSON.parse(r.stdout) as ImageBuild));
  let builtOnce: Promise<{ archive: string; image: OciImage }> | undefined;
  const built = () =>
    (builtOnce ??= (async () => {
      const archive = (await testRunner()({ file: script, args: ["--print-path"] })).stdout.trim();
      if (!existsSync(archive)) throw new Error(`no ${archive}: run make image (test-deploy depends on it)`);
      return { archive, image: await readOciArchive(archive) };
    })());

  it("install the same Debian packages, and the same Node", async () => {
    const c = await config();
    expect([...c.packages].sort()).toEqual([...stage.aptPackages].sort());
    expect(stage.from).toBe(`node:${c.node}-bookworm-slim`);
  });

  it("add to the Dockerfile's packages only what its base image has for Node, and the archive has Node's libraries", async () => {
    const c = await config();
    // Node's shared libraries and the packages that own them on this Debian 12 machine.
    const ldd = await testRunner()({ file: "ldd", args: [join(packageRoot(), "node_modules/node/bin/node")] });
    const libs = [...ldd.stdout.matchAll(/=> (\S+) \(/g)].map((m) => m[1] ?? "");
    const paths = libs.flatMap((l) => [l, `/usr${l}`]);
    const owners = await testRunner()({ file: "dpkg-query", args: ["-S", ...paths], okExitCodes: [1] });
    const nodeNeeds = new Set(owners.stdout.split("\n").filter(Boolean).map((l) => l.split(":")[0] ?? ""));
    for (const extra of c.baseExtras) expect(nodeNeeds, `${extra}: a base-image package Node needs`).toContain(extra);
    // The built image's Debian layer (the archive's first) has every one of them installed.
    const status = await (await built()).image.layerFile(0, "var/lib/dpkg/status");
    // One stanza per package; fields such as Protected: may come between Package: and Status:.
    const installed = new Set(
      status
        .split(/\n\n+/)
        .filter((stanza) => /^Status: install ok installed$/m.test(stanza))
        .map((stanza) => /^Package: (\S+)$/m.exec(stanza)?.[1]),
    );
    expect([...nodeNeeds].filter((p) => !installed.has(p))).toEqual([]);
    for (const p of c.packages) expect(installed, `${p} in the image`).toContain(p);
  }, 120_000);

  it("run the same entrypoint and command, as the same user, in the same directory and environment", async () => {
    const c = await config();
    expect(c.entrypoint).toEqual(stage.entrypoint);
    expect(c.cmd).toEqual(stage.cmd);
    expect(c.workdir).toBe(stage.workdir);
    expect(c.user).toBe(stage.user);
    expect(stage.user).toBe("");
    for (const e of stage.env) expect(c.env).toContain(e);
  });

  it("are named as the manifests name them", async () => {
    const c = await config();
    const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string };
    expect(c.name).toBe(`cloak.invalid/cloak:${pkg.version}`);
    expect(readFileSync(join(packageRoot(), "manifests/base/csi-node.yaml"), "utf8")).toContain(`image: ${c.name}`);
  });

  it("and the archive make image wrote holds that configuration", async () => {
    const { index, manifest, config: image } = (await built()).image;
    const c = await config();
    expect(index.manifests[0]?.annotations["io.containerd.image.name"]).toBe(c.name);
    expect(image.config.Entrypoint).toEqual(c.entrypoint);
    expect(image.config.Cmd).toEqual(c.cmd);
    expect(image.config.WorkingDir).toBe(c.workdir);
    expect(image.config.Env).toEqual(c.env);
    expect(image.config.User ?? "").toBe(c.user);
    expect(manifest.layers).toHaveLength(4);
  }, 60_000);
});

describe("the OCI archive writer (scripts/image/oci-archive.sh)", () => {
  const writer = join(packageRoot(), "scripts/image/oci-archive.sh");
  /** A layer directory with the given files, written in the given order, with the given mtime. */
  const layer = (dir: string, files: ReadonlyArray<[string, string]>, mtime: number) => {
    for (const [name, text] of files) {
      mkdirSync(join(dir, name, ".."), { recursive: true });
      writeFileSync(join(dir, name), text);
      utimesSync(join(dir, name), mtime, mtime);
    }
    return dir;
  };
  const digest = async (dir: string, out: string, epoch = "0") =>
    (
      await testRunner()({
        file: writer,
        args: ["--out", out, "--name", "cloak.invalid/cloak:test", "--entrypoint", '["/bin/true"]', "--env", "A=b=c", "--root-owned", dir],
        env: { SOURCE_DATE_EPOCH: epoch },
      })
    ).stdout.trim();

  it("gives the same bytes and digest for the same contents, whatever their mtimes and creation order", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "cloak-oci-"));
    try {
      const files: Array<[string, string]> = [["opt/a/one", "1"], ["opt/b/two", "22"], ["etc/three", "333"]];
      const first = layer(join(tmp, "first"), files, 1_000_000);
      const second = layer(join(tmp, "second"), [...files].reverse(), 2_000_000);
      const [d1, d2] = [await digest(first, join(tmp, "1.tar")), await digest(second, join(tmp, "2.tar"))];
      expect(d1).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(d2).toBe(d1);
      expect(readFileSync(join(tmp, "2.tar")).equals(readFileSync(join(tmp, "1.tar")))).toBe(true);
      // And it can tell: other contents or another SOURCE_DATE_EPOCH give another image.
      writeFileSync(join(second, "etc/three"), "334");
      expect(await digest(second, join(tmp, "3.tar"))).not.toBe(d1);
      expect(await digest(first, join(tmp, "4.tar"), "86400")).not.toBe(d1);
      // The digest printed is the manifest's the index names, and the config holds what was asked.
      const { index, config } = await readOciArchive(join(tmp, "1.tar"));
      expect(index.manifests.map((m) => m.digest)).toEqual([d1]);
      expect(config.config).toMatchObject({ Entrypoint: ["/bin/true"], Env: ["A=b=c"] });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});
