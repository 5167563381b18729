import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";

/**
 * A real key service for tests of its clients (the node plugin in the VM tier, the host tests):
 * `cloak keys init` makes the files, `cloak keyservice` serves them over mutual TLS on
 * 127.0.0.1, and the test gets the target, the client certificate paths, and stop/start to
 * take the service away and bring it back on the same port.
 *
 *   const ks = await startKeyServiceHarness();
 *   const keys = await createKeyServiceKeySource({ target: ks.target, serverName: ks.serverName, ...ks.client, logger });
 *   await ks.stop();   // stage now fails with Unavailable
 *   await ks.start();  // and succeeds again
 *   await ks.cleanup();
 *
 * Needs the built tree (`make build`): it runs dist/cmd/cloak.js with this Node.
 */
export interface KeyServiceHarnessOptions {
  /** Where the key files go; a fresh temporary directory (removed by cleanup) when unset. */
  readonly dir?: string;
  /** The client identity whose certificate the harness makes and the service allows. */
  readonly clientIdentity?: string;
  /** Extra `cloak keyservice` arguments (e.g. more --allow). */
  readonly extraArgs?: readonly string[];
  /** Serve these TLS files instead of the ones `keys init` wrote (rotation tests). */
  readonly serverTls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  /** Instead of `--master-secret <keys>/master-secret` (KMS mode: `--kms … --cluster-id …`). */
  readonly masterSecretArgs?: readonly string[];
  /**
   * false: start() returns once the service listens, serving or not (KMS mode with the KMS
   * down); true by default: once it serves keys.
   */
  readonly awaitReady?: boolean;
  /** How long start() waits for the service to serve; 20 s by default (the VM is slow). */
  readonly startTimeoutMs?: number;
}

export interface KeyServiceHarness {
  /** gRPC target, `127.0.0.1:<port>`; the port stays the same across stop/start. */
  readonly target: string;
  /** The name to verify the server certificate against (it carries localhost and 127.0.0.1). */
  readonly serverName: string;
  /** The client's certificate, key and the CA, as the node plugin's flags want them. */
  readonly client: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  readonly clientIdentity: string;
  /**
   * The `cloak keys init` directory: master-secret and salt (a file key source reads these
   * too), ca/ (to issue more certificates), server/, clients/node/.
   */
  readonly keysDir: string;
  /** The server's TLS files, for rotation tests. */
  readonly server: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  /** The HTTP port of /metrics, /healthz, /readyz. */
  metricsPort(): number;
  /** The running service's pid, or undefined while stopped. */
  pid(): number | undefined;
  /** Everything the service printed (all runs), and its log lines parsed. */
  output(): string;
  logLines(): Record<string, unknown>[];
  /** Starts the service again after stop(), on the same port. */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit. Idempotent. */
  stop(): Promise<void>;
  /** stop() and remove the files if the harness made the directory. */
  cleanup(): Promise<void>;
}

export const DEFAULT_CLIENT_IDENTITY = "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node";

export function cloakEntry(): string {
  const entry = join(packageRoot(), "dist", "cmd", "cloak.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`make build\` first`);
  return entry;
}

export async function startKeyServiceHarness(options: KeyServiceHarnessOptions = {}): Promise<KeyServiceHarness> {
  const ownDir = options.dir === undefined;
  const base = options.dir ?? (await mkdtemp(join(tmpdir(), "cloak-ks-harness-")));
  const keysDir = join(base, "keys");
  const clientIdentity = options.clientIdentity ?? DEFAULT_CLIENT_IDENTITY;
  if (!existsSync(join(keysDir, "salt"))) await initKeys(keysDir, clientIdentity);
  const server = options.serverTls ?? {
    certFile: join(keysDir, "server/tls.crt"),
    keyFile: join(keysDir, "server/tls.key"),
    caFile: join(keysDir, "server/ca.crt"),
  };
  const client = {
    certFile: join(keysDir, "clients/node/tls.crt"),
    keyFile: join(keysDir, "clients/node/tls.key"),
    caFile: join(keysDir, "clients/node/ca.crt"),
  };

  let port = 0;
  let metricsPort = 0;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let raw = "";

  const start = async (): Promise<void> => {
    if (child) return;
    const args = [
      cloakEntry(),
      "keyservice",
      "--listen",
      `127.0.0.1:${port}`,
      "--metrics-listen",
      `127.0.0.1:${metricsPort}`,
      ...(options.masterSecretArgs ?? ["--master-secret", join(keysDir, "master-secret")]),
      "--salt",
      join(keysDir, "salt"),
      "--tls-cert",
      server.certFile,
      "--tls-key",
      server.keyFile,
      "--client-ca",
      server.caFile,
      "--allow",
      clientIdentity,
      "--reload-interval-ms",
      "200",
      "--drain-ms",
      "1000",
      ...(options.extraArgs ?? []),
    ];
    const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    const mark = raw.length;
    proc.stdout.setEncoding("utf8").on("data", (chunk: string) => (raw += chunk));
    proc.stderr.setEncoding("utf8").on("data", (chunk: string) => (raw += chunk));
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    exited.then(() => {
      if (child === proc) child = undefined;
    }, () => undefined);
    const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
    for (;;) {
      const lines = parseLines(raw.slice(mark));
      const ready = lines.find(
        (l) => l["msg"] === "key service ready" || (options.awaitReady === false && String(l["msg"]).startsWith("key service listening")),
      );
      if (ready) {
        port = Number(String(ready["endpoint"]).split(":").at(-1));
        metricsPort = Number(ready["metricsPort"]);
        return;
      }
      if (child !== proc) throw new Error(`the key service exited during startup:\n${raw.slice(mark)}`);
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new Error(`the key service did not start in time:\n${raw.slice(mark)}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    proc.kill("SIGTERM");
    const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
  };

  await start();
  return {
    get target() {
      return `127.0.0.1:${port}`;
    },
    serverName: "localhost",
    client,
    clientIdentity,
    keysDir,
    server,
    metricsPort: () => metricsPort,
    pid: () => child?.pid,
    output: () => raw,
    logLines: () => parseLines(raw),
    start,
    stop,
    async cleanup() {
      await stop();
      if (ownDir) await rm(base, { recursive: true, force: true });
    },
  };
}

/** `cloak keys init` as the harness wants it; a test that needs the files before the service calls this. */
export async function initKeys(keysDir: string, clientIdentity = DEFAULT_CLIENT_IDENTITY): Promise<void> {
  await runCloak(["keys", "init", keysDir, "--client", `node=${clientIdentity}`, "--dns", "localhost", "--ip", "127.0.0.1", "--days", "2"]);
}

function parseLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line still being written
    }
  }
  return out;
}

/** Runs a short `cloak` command (keys init/issue) and fails with its output. */
export async function runCloak(args: readonly string[]): Promise<string> {
  const proc = spawn(process.execPath, [cloakEntry(), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  proc.stderr.setEncoding("utf8").on("data", (c: string) => (out += c));
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  if (code !== 0) throw new Error(`cloak ${args.join(" ")} exited ${code}:\n${out}`);
  return out;
}
