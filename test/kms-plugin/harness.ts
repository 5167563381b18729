import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { Daemon } from "../netns/daemon.js";

/**
 * A real KMS v2 plugin for tests: cloak-kms-plugin (test/kms-plugin/main.go, built from Go
 * modules and cached by build.sh) over a fresh SoftHSM2 token in a temporary directory, with
 * one non-extractable AES-256 key generated in the token. The same process the key service and
 * kube-apiserver talk to in the tests:
 *
 *   const kms = await startKmsPlugin();
 *   kms.endpoint                      // unix:///tmp/cloak-kms-…/kms.sock
 *   await kms.rotate("kek-2");        // a new key in the token becomes the write key
 *   await kms.token("disable", "kek-1");  // the HSM refuses that key from now on
 *   await kms.kill(); await kms.start();  // the plugin goes away and comes back
 *   await kms.cleanup();
 */
export interface KmsPlugin {
  readonly dir: string;
  readonly socket: string;
  /** `unix://` + socket, as `--kms` and an EncryptionConfiguration take it. */
  readonly endpoint: string;
  /** The label of the write key now. */
  currentKey(): string;
  /** Generates `label` in the token and makes it the write key (what a KMS's rotation does). */
  rotate(label: string): Promise<void>;
  /** keygen | disable | enable | destroy | inspect on the token, as a separate process. */
  token(verb: "keygen" | "disable" | "enable" | "destroy" | "inspect", label: string): Promise<string>;
  start(): Promise<void>;
  /** SIGKILL: the socket stays behind with nothing listening, as after a crash. */
  kill(): Promise<void>;
  readonly running: boolean;
  cleanup(): Promise<void>;
}

const PIN = "1234";
const TOKEN = "cloak-kms";
const runner: Runner = createRunner({ logger: createLogger({ component: "kms-plugin-harness", level: "warn" }) });

/** Builds the plugin if it is not cached; its path. */
export async function ensureKmsPlugin(): Promise<string> {
  const out = await runner({ file: join(packageRoot(), "test/kms-plugin/build.sh"), args: [], timeoutMs: 20 * 60_000 });
  return out.stdout.trim().split("\n").at(-1) ?? "";
}

export async function startKmsPlugin(o: { firstKey?: string } = {}): Promise<KmsPlugin> {
  const binary = await ensureKmsPlugin();
  // Short: a unix socket path must fit in 108 bytes.
  const dir = await mkdtemp(join(tmpdir(), "cloak-kms-"));
  const env = { SOFTHSM2_CONF: join(dir, "softhsm2.conf") };
  const socket = join(dir, "kms.sock");
  const currentFile = join(dir, "current-key");
  let current = o.firstKey ?? "kek-1";
  let daemon: Daemon | undefined;
  const tokenFlags = ["--token", TOKEN, "--pin", PIN];
  const token = async (verb: string, label: string): Promise<string> =>
    (await runner({ file: binary, args: [verb, "--label", label, ...tokenFlags], env, secretArgs: [6], timeoutMs: 30_000 })).stdout;

  const cleanup = async (): Promise<void> => {
    await daemon?.stop("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir(join(dir, "tokens"), { mode: 0o700 });
    await writeFile(env.SOFTHSM2_CONF, `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    await runner({
      file: "softhsm2-util",
      args: ["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "5678"],
      env,
      secretArgs: [5, 7],
      timeoutMs: 30_000,
    });
    await token("keygen", current);
    await writeFile(currentFile, `${current}\n`);
  } catch (err) {
    await cleanup();
    throw err;
  }

  const start = async (): Promise<void> => {
    if (daemon?.running) return;
    daemon = new Daemon({
      name: "cloak-kms-plugin",
      argv: [binary, "serve", "--socket", socket, "--current-key-file", currentFile, ...tokenFlags],
      env,
      logFile: join(dir, "plugin.log"),
    });
    await daemon.waitForOutput((out) => out.includes("listening on"), 30_000);
  };
  try {
    await start();
  } catch (err) {
    await cleanup();
    throw err;
  }
  return {
    dir,
    socket,
    endpoint: `unix://${socket}`,
    currentKey: () => current,
    async rotate(label) {
      await token("keygen", label);
      await writeFile(currentFile, `${label}\n`);
      current = label;
    },
    token,
    start,
    async kill() {
      await daemon?.stop("SIGKILL");
    },
    get running() {
      return daemon?.running ?? false;
    },
    cleanup,
  };
}
