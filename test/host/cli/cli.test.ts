import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../../lib/paths.js";
import { cloakVersion, MIN_NODE_MAJOR } from "../../../lib/version.js";
import { startKeyServiceHarness } from "../../keyservice-harness/index.js";
import { createKeyDir } from "../../support/key-dir.js";
import { metricValue } from "../../support/csi-health.js";

// The built `cloak` as an operator meets it: --version, --help, the first log line of each
// daemon, and a Node that is too old.

const entry = join(packageRoot(), "dist", "cmd", "cloak.js");

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cloak(args: readonly string[], options: { node?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.node ?? process.execPath, [entry, ...args], { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-cli-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("--version", () => {
  it.each([[["--version"]], [["csi", "--version"]], [["keyservice", "--version"]], [["netd", "--version"]], [["netd", "run", "--version"]], [["keys", "--version"]]])(
    "cloak %j prints the version on stdout and succeeds",
    async (args) => {
      const r = await cloak(args);
      expect(r).toEqual({ code: 0, stdout: `cloak ${cloakVersion()} (Node.js ${process.version})\n`, stderr: "" });
    },
  );
});

describe("--help", () => {
  it.each([
    [["--help"], /^usage: cloak <command>/],
    [["-h"], /^usage: cloak <command>/],
    // Every verb of `cloak keys` is named where the commands are listed.
    [["--help"], /keys {9}make and wrap key service files \(init \| issue \| wrap \| rewrap\)/],
    [["help"], /^usage: cloak <command>/],
    [["csi", "--help"], /^usage: cloak csi/],
    [["keyservice", "--help"], /^usage: cloak keyservice/],
    [["netd", "--help"], /^usage: cloak netd/],
    [["netd", "status", "--help"], /^usage: cloak netd/],
    [["keys", "--help"], /^usage:\n {2}cloak keys init/],
    [["keys", "init", "--help"], /^usage:\n {2}cloak keys init/],
    [["keys", "issue", "-h"], /^usage:\n {2}cloak keys init/],
    [["keys", "wrap", "--help"], /^usage:\n {2}cloak keys init[\s\S]*cloak keys wrap /],
    [["keys", "rewrap", "-h"], /^usage:\n {2}cloak keys init[\s\S]*cloak keys rewrap /],
  ] as const)("cloak %j prints its usage on stdout and succeeds", async (args, usage) => {
    const r = await cloak(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(usage);
  });

  it.each([[[]], [["no-such-command"]], [["keys"]]])("cloak %j is a usage error: usage on stderr, exit 2", async (args) => {
    const r = await cloak(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/usage:/);
  });
});

describe("on a Node older than cloak needs", () => {
  // Debian's nodejs (make deps installs it): older than 24 on Debian 12. On a machine where it
  // is not older, this fails and says so rather than passing without having run.
  const oldNode = "/usr/bin/node";
  let oldVersion = "";
  beforeAll(async () => {
    if (!existsSync(oldNode)) throw new Error(`${oldNode} is missing: \`make deps\` installs Debian's nodejs for this test`);
    oldVersion = await new Promise<string>((resolve, reject) => {
      const child = spawn(oldNode, ["--version"], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
      child.once("error", reject);
      child.once("exit", () => resolve(out.trim()));
    });
    const major = Number(oldVersion.replace(/^v/, "").split(".")[0]);
    if (!(major < MIN_NODE_MAJOR)) throw new Error(`${oldNode} is ${oldVersion}, not older than ${MIN_NODE_MAJOR}: this test needs an older Node`);
  });

  it.each([[["csi", "--endpoint", "unix:///nonexistent/csi.sock"]], [["keyservice"]], [["netd", "run"]], [["keys", "init", "/nonexistent"]], [["--version"]]])(
    "cloak %j says so in one line and exits 1",
    async (args) => {
      const r = await cloak(args, { node: oldNode });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(`cloak needs Node.js ${MIN_NODE_MAJOR} or newer; ${oldNode} is Node.js ${oldVersion}\n`);
    },
  );
});

describe("a daemon whose start fails half way", () => {
  it("exits 1 with the reason, though the CSI socket was already served", async () => {
    const dir = join(root, "half-started");
    const keyDir = await createKeyDir(join(dir, "keys"));
    await mkdir(join(dir, "volumes"), { recursive: true });
    await mkdir(join(dir, "kubelet"), { recursive: true });
    await writeFile(join(dir, "not-a-directory"), "");
    const r = await cloak(
      [
        "csi",
        "--endpoint", `unix://${join(dir, "csi.sock")}`,
        "--node-id", "test-node",
        "--key-dir", keyDir,
        "--volumes-dir", join(dir, "volumes"),
        "--allowed-path-root", join(dir, "kubelet"),
        "--registration-dir", join(dir, "not-a-directory", "registry"),
      ],
      { timeoutMs: 30_000 },
    );
    expect(r.stdout).toMatch(/"msg":"serving"/);
    expect(r.stderr).toMatch(/^cloak: ENOTDIR: not a directory, mkdir .*not-a-directory\/registry/);
    expect(r.code).toBe(1);
  });
});

describe("each daemon's first log line and build info", () => {
  it("netd logs its version first", async () => {
    const env = { ...process.env };
    delete env["NODE_NAME"];
    const r = await cloak(["netd", "run", "--state-dir", join(root, "netd")], { env });
    expect(r.code).toBe(1);
    const first = JSON.parse(r.stdout.split("\n")[0] ?? "{}") as Record<string, unknown>;
    expect(first).toMatchObject({ component: "netd", msg: "starting cloak netd", version: cloakVersion(), node: process.version });
  });

  it("the key service logs its version first and exports cloak_build_info", async () => {
    const ks = await startKeyServiceHarness({ dir: join(root, "keyservice") });
    try {
      expect(ks.logLines()[0]).toMatchObject({ component: "keyservice", msg: "starting cloak keyservice", version: cloakVersion(), node: process.version });
      const metrics = await (await fetch(`http://127.0.0.1:${ks.metricsPort()}/metrics`)).text();
      expect(metricValue(metrics, "cloak_build_info", { component: "keyservice", version: cloakVersion(), node_version: process.version })).toBe(1);
    } finally {
      await ks.cleanup();
    }
  });
});
