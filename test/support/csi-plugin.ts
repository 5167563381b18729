import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { connectCsi, type CsiClient } from "./csi-client.js";
import { followJsonLines } from "./json-lines.js";

export interface PluginOptions {
  /** A scratch directory: the socket, volumes and kubelet-like paths go below it. */
  readonly dir: string;
  /** The file key source's directory; leave unset and pass --keyservice flags in `args` instead. */
  readonly keyDir?: string | undefined;
  readonly volumesDir?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly args?: readonly string[];
  /** How long startup may take; STARTUP_TIMEOUT_MS unless set. */
  readonly startTimeoutMs?: number;
}

export interface RunningPlugin {
  readonly socket: string;
  /** Paths the plugin accepts for staging and publishing. */
  readonly kubeletDir: string;
  readonly volumesDir: string;
  readonly client: CsiClient;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Raw stdout and stderr, for asserting that something never appears. */
  output(): string;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts the real plugin (the built `cloak csi`) as its own process on a unix socket and
 * waits until it answers, as kubelet would find it.
 */
export async function startPlugin(options: PluginOptions): Promise<RunningPlugin> {
  const { socket, kubeletDir, volumesDir, args } = await pluginCommand(options);
  const child = spawn(process.execPath, args, { env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: Record<string, unknown>[] = [];
  let raw = "";
  followJsonLines(child.stdout, { text: (chunk) => (raw += chunk), json: (line) => logs.push(line) });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (raw += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );

  const client = connectCsi(socket);
  await waitUntilServing(client, child, exited, () => raw, options.startTimeoutMs ?? STARTUP_TIMEOUT_MS);
  return {
    socket,
    kubeletDir,
    volumesDir,
    client,
    logs,
    output: () => raw,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The plugin's command line for `options`, with the directories it needs created. */
export async function pluginCommand(options: PluginOptions): Promise<{ socket: string; kubeletDir: string; volumesDir: string; args: string[] }> {
  const socket = join(options.dir, "csi.sock");
  const kubeletDir = join(options.dir, "kubelet");
  const volumesDir = options.volumesDir ?? join(options.dir, "volumes");
  await mkdir(kubeletDir, { recursive: true });
  await mkdir(volumesDir, { recursive: true });
  const args = [
    join(packageRoot(), "dist", "cmd", "cloak.js"),
    "csi",
    "--endpoint", `unix://${socket}`,
    "--node-id", "test-node",
    ...(options.keyDir ? ["--key-dir", options.keyDir] : []),
    "--volumes-dir", volumesDir,
    "--allowed-path-root", kubeletDir,
    "--log-level", "debug",
    ...(options.args ?? []),
  ];
  return { socket, kubeletDir, volumesDir, args };
}

// Generous: a plugin's first start in the VM tier compiles every module under an emulated
// CPU, which on a busy machine has taken two minutes.
const STARTUP_TIMEOUT_MS = 300_000;

async function waitUntilServing(
  client: CsiClient,
  child: ChildProcess,
  exited: Promise<unknown>,
  output: () => string,
  timeoutMs: number,
): Promise<void> {
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (done) throw new Error(`the plugin exited during startup:\n${output()}`);
    try {
      await client.identity("GetPluginInfo", {}, { timeoutMs: 2_000 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  child.kill("SIGKILL");
  throw new Error(`the plugin did not answer within ${timeoutMs / 1000} s:\n${output()}`);
}
