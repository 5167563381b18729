import { spawn } from "node:child_process";
import { mkdir, open, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { volumeImagePath } from "../../csi/disk/local/layout.js";
import { startPlugin } from "../../test/support/csi-plugin.js";
import { connectCsi, type CsiClient } from "../../test/support/csi-client.js";
import { followJsonLines } from "../../test/support/json-lines.js";
import { awaitBreakdown, type CallBreakdown, type LogLine } from "./breakdown.js";

/**
 * The two node plugins the stage benchmark compares, driven identically: cloak's real plugin
 * (`cloak csi`, file key source) and the plain baseline (plain-node.ts). Both are their own
 * processes on a unix socket, log at debug level, and are called through the same CSI client.
 */
export type DriverName = "cloak" | "plain";

export interface Driver {
  readonly name: DriverName;
  readonly client: CsiClient;
  readonly logs: readonly LogLine[];
  readonly kubeletDir: string;
  readonly volumesDir: string;
  stop(): Promise<unknown>;
}

export async function startCloak(dir: string, keyDir: string, args: readonly string[] = []): Promise<Driver> {
  const plugin = await startPlugin({ dir, keyDir, args });
  return { name: "cloak", client: plugin.client, logs: plugin.logs, kubeletDir: plugin.kubeletDir, volumesDir: plugin.volumesDir, stop: () => plugin.stop() };
}

export async function startPlain(dir: string): Promise<Driver> {
  const socket = join(dir, "csi.sock");
  const kubeletDir = join(dir, "kubelet");
  const volumesDir = join(dir, "volumes");
  await mkdir(kubeletDir, { recursive: true });
  await mkdir(volumesDir, { recursive: true });
  const entry = join(packageRoot(), "dist", "bench", "storage", "plain-node.js");
  const args = [entry, "--endpoint", `unix://${socket}`, "--volumes-dir", volumesDir, "--allowed-path-root", kubeletDir, "--log-level", "debug"];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  let output = "";
  followJsonLines(child.stdout, { text: (chunk) => (output += chunk), json: (line) => logs.push(line as LogLine) });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const client = connectCsi(socket);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await client.identity("GetPluginInfo", {}, { timeoutMs: 2_000 });
      break;
    } catch (err) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`the plain baseline did not start:\n${output}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    name: "plain",
    client,
    logs,
    kubeletDir,
    volumesDir,
    async stop() {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

const MOUNT_EXT4 = { mount: { fs_type: "ext4", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

export function stagingPath(driver: Driver, volumeId: string): string {
  return join(driver.kubeletDir, "plugins", "staging", volumeId);
}

/** A new empty volume as the controller's local source makes one: a sparse file. */
export async function createVolume(driver: Driver, volumeId: string, sizeBytes: number): Promise<void> {
  const file = volumeImagePath(driver.volumesDir, volumeId);
  await (await open(file, "wx")).close();
  await truncate(file, sizeBytes);
}

export async function removeVolume(driver: Driver, volumeId: string): Promise<void> {
  await rm(volumeImagePath(driver.volumesDir, volumeId), { force: true });
}

export interface TimedCall {
  /** What kubelet would see: the gRPC call's wall time at the client. */
  readonly clientMs: number;
  readonly breakdown: CallBreakdown;
}

/** NodeStageVolume of an ext4 mount volume, timed at the client and broken down from the server's log. */
export async function stage(driver: Driver, volumeId: string): Promise<TimedCall> {
  const path = stagingPath(driver, volumeId);
  await mkdir(path, { recursive: true });
  return timed(driver, "NodeStageVolume", volumeId, () =>
    driver.client.node("NodeStageVolume", { volume_id: volumeId, staging_target_path: path, volume_capability: MOUNT_EXT4, volume_context: {} }, { timeoutMs: 600_000 }),
  );
}

export async function unstage(driver: Driver, volumeId: string): Promise<TimedCall> {
  return timed(driver, "NodeUnstageVolume", volumeId, () =>
    driver.client.node("NodeUnstageVolume", { volume_id: volumeId, staging_target_path: stagingPath(driver, volumeId) }, { timeoutMs: 600_000 }),
  );
}

async function timed(driver: Driver, method: string, volumeId: string, call: () => Promise<unknown>): Promise<TimedCall> {
  const from = driver.logs.length;
  const started = performance.now();
  await call();
  const clientMs = performance.now() - started;
  return { clientMs, breakdown: await awaitBreakdown(driver.logs, from, method, volumeId) };
}
