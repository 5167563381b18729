import { spawn } from "node:child_process";
import { chmod, cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloakEntry, runCloak } from "../../keyservice-harness/index.js";

let base: string;
let keys: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "cloak-ks-startup-"));
  keys = join(base, "keys");
  await runCloak(["keys", "init", keys, "--dns", "localhost", "--ip", "127.0.0.1"]);
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  output: string;
}

/**
 * Runs `cloak keyservice` and returns how it ended, or kills it once it serves (a start that
 * should have been refused then fails the test through its exit code). `prefix` runs it under
 * another command (setpriv).
 */
async function runService(args: string[], prefix: string[] = []): Promise<Outcome> {
  const argv = [...prefix, process.execPath, cloakEntry(), "keyservice", "--metrics-listen", "", ...args];
  const [file = "", ...rest] = argv;
  const proc = spawn(file, rest, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let signalled = false;
  proc.stdout.setEncoding("utf8").on("data", (c: string) => {
    output += c;
    if (!signalled && output.includes('"msg":"key service ready"')) {
      signalled = true;
      proc.kill("SIGTERM");
    }
  });
  proc.stderr.setEncoding("utf8").on("data", (c: string) => (output += c));
  const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  clearTimeout(killer);
  return { code, output };
}

const tlsArgs = (dir = keys): string[] => [
  "--tls-cert",
  join(dir, "server/tls.crt"),
  "--tls-key",
  join(dir, "server/tls.key"),
  "--client-ca",
  join(dir, "server/ca.crt"),
];

const secretArgs = (master: string, salt: string): string[] => ["--master-secret", master, "--salt", salt];
const ALLOW = ["--allow", "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"];
const LISTEN = ["--listen", "127.0.0.1:0"];

async function secretFile(name: string, bytes: number, mode: number): Promise<string> {
  const path = join(base, name);
  await writeFile(path, Buffer.alloc(bytes, 0x5a), { mode });
  await chmod(path, mode);
  return path;
}

describe("startup", () => {
  it("starts with good files (the control for every refusal below)", async () => {
    const result = await runService([...LISTEN, ...secretArgs(join(keys, "master-secret"), join(keys, "salt")), ...tlsArgs(), ...ALLOW]);
    expect(result.output).toContain('"msg":"key service ready"');
    expect(result.code).toBe(0);
  });

  it.each([
    ["a missing master secret", async () => join(base, "absent"), /master secret file .*absent cannot be read \(ENOENT\)/],
    ["a short master secret", () => secretFile("short", 31, 0o400), /master secret file .*short holds 31 bytes; at least 32 are required/],
    ["a world-readable master secret", () => secretFile("open", 32, 0o644), /master secret file .*open is world-readable \(mode 644\); make it 0400 or 0440/],
  ])("refuses %s", async (_name, make, message) => {
    const master = await make();
    const result = await runService([...LISTEN, ...secretArgs(master, join(keys, "salt")), ...tlsArgs(), ...ALLOW]);
    expect(result.code).toBe(1);
    expect(result.output).toMatch(message);
    expect(result.output).toContain("startup refused");
    expect(result.output).not.toContain('"msg":"serving"');
  });

  it("refuses a salt it cannot read (root without CAP_DAC_OVERRIDE, as in a locked-down container)", async () => {
    const salt = await secretFile("unreadable-salt", 32, 0o000);
    const result = await runService(
      [...LISTEN, ...secretArgs(join(keys, "master-secret"), salt), ...tlsArgs(), ...ALLOW],
      ["setpriv", "--bounding-set=-dac_override,-dac_read_search"],
    );
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/salt file .*unreadable-salt cannot be read \(EACCES\)/);
  });

  it("refuses a short or world-readable salt", async () => {
    const short = await runService([...LISTEN, ...secretArgs(join(keys, "master-secret"), await secretFile("short-salt", 16, 0o400)), ...tlsArgs(), ...ALLOW]);
    expect(short.code).toBe(1);
    expect(short.output).toMatch(/salt file .* holds 16 bytes/);
    const open = await runService([...LISTEN, ...secretArgs(join(keys, "master-secret"), await secretFile("open-salt", 32, 0o604)), ...tlsArgs(), ...ALLOW]);
    expect(open.code).toBe(1);
    expect(open.output).toMatch(/salt file .* is world-readable/);
  });

  it("refuses missing or mismatched TLS files", async () => {
    const other = join(base, "other");
    await runCloak(["keys", "init", other]);
    const mixed = join(base, "mixed");
    await cp(join(keys, "server"), join(mixed, "server"), { recursive: true });
    await cp(join(other, "server/tls.key"), join(mixed, "server/tls.key"), { force: true });
    const secrets = secretArgs(join(keys, "master-secret"), join(keys, "salt"));
    const missing = await runService([...LISTEN, ...secrets, ...tlsArgs(join(base, "nowhere")), ...ALLOW]);
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/cannot be read \(ENOENT\)/);
    const mismatched = await runService([...LISTEN, ...secrets, ...tlsArgs(mixed), ...ALLOW]);
    expect(mismatched.code).toBe(1);
    expect(mismatched.output).toMatch(/private key .* does not belong to certificate/);
  });

  it("refuses a bad allow-list and a missing one", async () => {
    const secrets = secretArgs(join(keys, "master-secret"), join(keys, "salt"));
    const star = await runService([...LISTEN, ...secrets, ...tlsArgs(), "--allow", "*"]);
    expect(star.code).toBe(1);
    expect(star.output).toMatch(/admits everyone/);
    const none = await runService([...LISTEN, ...secrets, ...tlsArgs()]);
    expect(none.code).toBe(2);
    expect(none.output).toMatch(/no --allow or --allow-file/);
  });

  it("allows development mode without TLS only on loopback or a unix socket, with a warning", async () => {
    const secrets = secretArgs(join(keys, "master-secret"), join(keys, "salt"));
    const wide = await runService(["--insecure-dev", "--listen", "0.0.0.0:0", ...secrets]);
    expect(wide.code).toBe(2);
    expect(wide.output).toMatch(/only on a unix socket or a loopback address, not 0\.0\.0\.0/);
    const local = await runService(["--insecure-dev", "--listen", "127.0.0.1:0", ...secrets]);
    expect(local.code).toBe(0);
    expect(local.output).toMatch(/"level":40.*INSECURE DEVELOPMENT MODE/);
    const unix = await runService(["--insecure-dev", "--listen", `unix://${join(base, "ks.sock")}`, ...secrets]);
    expect(unix.code).toBe(0);
    expect(unix.output).toContain("INSECURE DEVELOPMENT MODE");
  });
});
