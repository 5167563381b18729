import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { innerPaths } from "../../../csi/wrap/layout.js";
import { mapperName } from "../../../csi/luks/luks-device.js";
import { parseMountInfo } from "../../../csi/tools/mount.js";
import { packageRoot } from "../../../lib/paths.js";
import { Daemon } from "../../netns/daemon.js";
import { connectCsi, type CsiClient } from "../../support/csi-client.js";
import { startPlugin, type PluginOptions, type RunningPlugin } from "../../support/csi-plugin.js";
import { createKeyDir } from "../../support/key-dir.js";
import { scrubTree } from "../../support/scrub.js";
import { requireDmCrypt, run } from "../csi/fixture.js";

export { MiB, blockCapability, mountCapability, run } from "../csi/fixture.js";

export type Profile = "bind" | "mapped" | "attach" | "nostage";
export type Hostile = "non-block" | "symlink" | "hang" | "data";

export const DRIVER_NAME = "wrapped.cloak.dev";
/** A plugin's start on the VM's emulated CPU: seconds on an idle machine, minutes on a busy one. */
const START_TIMEOUT_MS = 300_000;
const NODE_ID = "wrap-node-1";

/** The block test driver's binary: built on the host (make blockdriver) before the VM boots. */
export async function blockDriverBinary(): Promise<string> {
  const out = await run({ file: join(packageRoot(), "test/blockdriver/build.sh"), args: ["--print-path"] });
  const path = out.stdout.trim();
  if (!existsSync(path)) throw new Error(`the block test driver is not built (${path}): run \`make blockdriver\` first`);
  return path;
}

/**
 * cloak in wrapper mode as deployed: the block test driver ("inner") on its socket, a cloak
 * node process dialling it, and a cloak controller process dialling it too (on a node, the
 * inner controller would be a private copy; here one driver serves both), each with its own
 * client, plus a client straight to the inner driver for checks behind cloak's back.
 */
export class WrapFixture {
  root = "";
  keyDir = "";
  driver!: Daemon;
  node!: RunningPlugin;
  controller!: RunningPlugin;
  inner!: CsiClient;
  private binary = "";

  constructor(
    readonly profile: Profile,
    private hostile?: Hostile,
  ) {}

  async setUp(): Promise<void> {
    requireDmCrypt();
    this.binary = await blockDriverBinary();
    this.root = await mkdtemp(join(tmpdir(), "cloak-vm-wrap-"));
    this.keyDir = await createKeyDir(join(this.root, "keys"));
    await mkdir(this.stateDir, { recursive: true });
    await this.startDriver();
    this.inner = connectCsi(this.innerSocket);
    // One after the other: two Node starts at once on the VM's emulated CPU take longer than
    // twice one.
    this.node = await this.startNode();
    this.controller = await this.startController();
  }

  async tearDown(): Promise<void> {
    this.inner?.close();
    await this.node?.stop("SIGKILL");
    await this.controller?.stop("SIGKILL");
    await this.driver?.stop("SIGKILL");
    if (this.root) {
      await scrubTree(this.root);
      await rm(this.root, { recursive: true, force: true });
    }
  }

  get innerSocket(): string {
    return join(this.root, "inner.sock");
  }

  get stateDir(): string {
    return join(this.root, "inner-state");
  }

  /** Where kubelet's paths are (the node plugin's allowed root). */
  get kubeletDir(): string {
    return join(this.root, "node", "kubelet");
  }

  get innerRoot(): string {
    return join(this.kubeletDir, "plugins", "kubernetes.io", "csi", DRIVER_NAME, "inner");
  }

  async startDriver(): Promise<void> {
    const hostile = this.hostile;
    const args = ["--endpoint", `unix://${this.innerSocket}`, "--node-id", NODE_ID, "--state-dir", this.stateDir, "--profile", this.profile];
    if (hostile) args.push("--hostile", hostile);
    this.driver = new Daemon({ name: "blockdriver", argv: [this.binary, ...args], logFile: join(this.root, "blockdriver.log") });
    await this.driver.waitForOutput((out) => out.includes("serving on"), 30_000);
  }

  /** Restarts the inner driver (another hostile mode, or none); cloak's channel reconnects by itself. */
  async restartDriver(hostile: Hostile | undefined): Promise<void> {
    await this.driver.stop("SIGTERM");
    this.hostile = hostile;
    await this.startDriver();
  }

  startNode(overrides: Partial<PluginOptions> = {}): Promise<RunningPlugin> {
    return startPlugin({
      dir: join(this.root, "node"),
      keyDir: this.keyDir,
      args: ["--wrap", `unix://${this.innerSocket}`, "--services", "node", "--driver-name", DRIVER_NAME, "--inner-root", this.innerRoot],
      startTimeoutMs: START_TIMEOUT_MS,
      ...overrides,
    });
  }

  startController(): Promise<RunningPlugin> {
    return startPlugin({
      dir: join(this.root, "controller"),
      args: ["--wrap", `unix://${this.innerSocket}`, "--services", "controller", "--driver-name", DRIVER_NAME],
      startTimeoutMs: START_TIMEOUT_MS,
    });
  }

  async restartNode(overrides: Partial<PluginOptions> = {}): Promise<void> {
    await this.node.stop("SIGKILL");
    this.node = await this.startNode(overrides);
  }

  get ctl() {
    return this.controller.client.controller;
  }

  get nodeCall() {
    return this.node.client.node;
  }

  /** CreateVolume through cloak; returns the volume (with the inner driver's id). */
  async createVolume(name: string, capability: object, sizeBytes: number, source?: object) {
    const answer = await this.ctl("CreateVolume", {
      name,
      capacity_range: { required_bytes: String(sizeBytes) },
      volume_capabilities: [capability],
      parameters: { type: "ssd" },
      ...(source ? { volume_content_source: source } : {}),
    });
    if (!answer.volume) throw new Error("CreateVolume returned no volume");
    return answer.volume;
  }

  /** ControllerPublish when the profile attaches (else {}): the publish_context NodeStage needs. */
  async attach(volumeId: string, capability: object): Promise<Record<string, string>> {
    if (this.profile !== "attach") return {};
    const answer = await this.ctl("ControllerPublishVolume", { volume_id: volumeId, node_id: NODE_ID, volume_capability: capability });
    return answer.publish_context;
  }

  async detachFromNode(volumeId: string): Promise<void> {
    if (this.profile === "attach") await this.ctl("ControllerUnpublishVolume", { volume_id: volumeId, node_id: NODE_ID });
  }

  /** kubelet's staging path for a cloak volume (a directory named by a hash of the handle). */
  stagingPath(volumeId: string): string {
    return join(this.kubeletDir, "plugins", "kubernetes.io", "csi", DRIVER_NAME, createHash("sha256").update(volumeId).digest("hex"), "globalmount");
  }

  targetPath(volumeId: string, pod = "pod-a"): string {
    return join(this.kubeletDir, "pods", pod, "volumes", "kubernetes.io~csi", createHash("sha256").update(volumeId).digest("hex").slice(0, 12), "mount");
  }

  async stage(volumeId: string, capability: object, publishContext: Record<string, string>, volumeContext: Record<string, string> = {}, timeoutMs?: number) {
    await mkdir(this.stagingPath(volumeId), { recursive: true });
    await this.nodeCall(
      "NodeStageVolume",
      { volume_id: volumeId, staging_target_path: this.stagingPath(volumeId), volume_capability: capability, publish_context: publishContext, volume_context: volumeContext },
      timeoutMs === undefined ? {} : { timeoutMs },
    );
  }

  async publish(volumeId: string, capability: object, pod?: string): Promise<string> {
    const target = this.targetPath(volumeId, pod);
    await mkdir(join(target, ".."), { recursive: true });
    await this.nodeCall("NodePublishVolume", {
      volume_id: volumeId,
      staging_target_path: this.stagingPath(volumeId),
      target_path: target,
      volume_capability: capability,
    });
    return target;
  }

  async unpublish(volumeId: string, pod?: string): Promise<void> {
    await this.nodeCall("NodeUnpublishVolume", { volume_id: volumeId, target_path: this.targetPath(volumeId, pod) });
  }

  async unstage(volumeId: string): Promise<void> {
    await this.nodeCall("NodeUnstageVolume", { volume_id: volumeId, staging_target_path: this.stagingPath(volumeId) });
  }

  /** The inner driver's image file of a volume or snapshot id it issued. */
  imageOf(id: string): string {
    const stem = id.slice(id.lastIndexOf("/") + 1);
    return join(this.stateDir, id.includes("/snapshots/") ? "snapshots" : "volumes", `${stem}.img`);
  }

  async sha256(file: string): Promise<string> {
    return createHash("sha256").update(await readFile(file)).digest("hex");
  }

  /**
   * What a volume left on the node: mounts below the node's directory, cloak's per-volume
   * directory, its dm mapping, loop devices on its image, the inner driver's node record.
   * All empty once it is fully unstaged (loop devices stay while the attach profile's
   * ControllerPublish holds the disk, as a cloud attachment would).
   */
  async leftovers(volumeId: string): Promise<{ mounts: string[]; innerDir: boolean; mapping: boolean; loops: string[]; innerRecord: boolean }> {
    const prefix = `${join(this.root, "node")}/`;
    const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"))
      .map((m) => m.mountPoint)
      .filter((p) => p.startsWith(prefix));
    const loops = (await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", this.imageOf(volumeId)] })).stdout
      .split("\n")
      .filter((l) => l.startsWith("/dev/"));
    const stem = volumeId.slice(volumeId.lastIndexOf("/") + 1);
    return {
      mounts,
      innerDir: existsSync(innerPaths(this.innerRoot, volumeId).dir),
      mapping: existsSync(`/dev/mapper/${mapperName(volumeId)}`),
      loops,
      innerRecord: (await readdir(join(this.stateDir, "node"))).includes(`${stem}.json`),
    };
  }
}

/** What a fully released volume leaves behind: nothing (the attach profile's loop device aside, before ControllerUnpublish). */
export const NOTHING = { mounts: [], innerDir: false, mapping: false, innerRecord: false };
