import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRunner, type Runner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { createKeyDir } from "../../support/key-dir.js";
import { startPlugin, type PluginOptions, type RunningPlugin } from "../../support/csi-plugin.js";
import { scrubTree } from "../../support/scrub.js";
import * as blkid from "../../../csi/tools/blkid.js";

export const MiB = 1024 * 1024;
export const run: Runner = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });

/**
 * The VM tier needs dm-crypt: fail loudly (never skip) when it is missing, e.g. when these
 * tests are started on a host without going through test/vm/run.sh.
 */
export function requireDmCrypt(): void {
  // test/vm/run.sh sets CLOAK_VM_MODE after checking the kernel (or booting one) with dm-crypt.
  const mode = process.env["CLOAK_VM_MODE"];
  if (mode !== "vm" && mode !== "native") throw new Error("the VM tier needs dm-crypt; run it with `make test-vm` (test/vm/run.sh)");
}

export const mountCapability = (fsType = "ext4", mountFlags: string[] = []) => ({
  mount: { fs_type: fsType, mount_flags: mountFlags },
  access_mode: { mode: "SINGLE_NODE_WRITER" as const },
});
export const blockCapability = { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

/**
 * One plugin over a scratch directory, with helpers that drive it the way kubelet does.
 * Failpoints given to `restart` stay armed in every later process and fire once each
 * (CLOAK_FAILPOINTS_FIRED), so after a crash `restart()` is the retry's plugin.
 */
export class CsiFixture {
  root = "";
  keyDir = "";
  plugin!: RunningPlugin;
  private failpoints: readonly string[] = [];

  async setUp(): Promise<void> {
    requireDmCrypt();
    this.root = await mkdtemp(join(tmpdir(), "cloak-vm-csi-"));
    this.keyDir = await createKeyDir(join(this.root, "keys"));
    await mkdir(join(this.root, "fired"));
    this.plugin = await this.start();
  }

  async tearDown(): Promise<void> {
    await this.plugin?.stop("SIGKILL");
    if (this.root) {
      await scrubTree(this.root);
      await rm(this.root, { recursive: true, force: true });
    }
  }

  /** Starts (or restarts) the plugin on the same socket and volumes. */
  async start(overrides: Partial<PluginOptions> = {}): Promise<RunningPlugin> {
    const env = { CLOAK_FAILPOINTS: this.failpoints.join(","), CLOAK_FAILPOINTS_FIRED: join(this.root, "fired"), ...overrides.env };
    // The guest's tmpfs holds about 1 GiB, less than a test file's volumes would take if
    // their sparse disks were full: the accounting is told so (capacity tests are host-tier).
    const args = ["--overcommit-ratio", "8", ...(overrides.args ?? [])];
    return startPlugin({ dir: join(this.root, "plugin"), keyDir: this.keyDir, ...overrides, env, args });
  }

  /** Kills the plugin (SIGKILL) and starts it again; `failpoints`, when given, are armed from now on. */
  async restart(overrides: Partial<PluginOptions> & { failpoints?: readonly string[] } = {}): Promise<void> {
    const { failpoints, ...options } = overrides;
    if (failpoints) this.failpoints = failpoints;
    await this.plugin.stop("SIGKILL");
    this.plugin = await this.start(options);
  }

  /** Whether a log line of the running process has this message. */
  logged(msg: string): boolean {
    return this.plugin.logs.some((l) => l["msg"] === msg);
  }

  get node() {
    return this.plugin.client.node;
  }

  volumeFile(id: string): string {
    return join(this.plugin.volumesDir, `${id}.img`);
  }

  /** A new empty volume, as the controller's local source creates it: a sparse file. */
  async newVolume(id: string, size = 64 * MiB): Promise<string> {
    const file = this.volumeFile(id);
    await (await open(file, "w")).close();
    await truncate(file, size);
    return file;
  }

  stagingPath(id: string): string {
    return join(this.plugin.kubeletDir, "plugins", "staging", id);
  }

  targetPath(id: string, pod = "pod-a"): string {
    return join(this.plugin.kubeletDir, "pods", pod, "volumes", id);
  }

  async stage(id: string, capability: object = mountCapability(), context: Record<string, string> = {}): Promise<void> {
    await mkdir(this.stagingPath(id), { recursive: true });
    await this.node("NodeStageVolume", {
      volume_id: id,
      staging_target_path: this.stagingPath(id),
      volume_capability: capability,
      volume_context: context,
    });
  }

  async publish(id: string, capability: object = mountCapability(), options: { readonly?: boolean; pod?: string } = {}): Promise<string> {
    const target = this.targetPath(id, options.pod);
    await this.node("NodePublishVolume", {
      volume_id: id,
      staging_target_path: this.stagingPath(id),
      target_path: target,
      volume_capability: capability,
      readonly: options.readonly ?? false,
    });
    return target;
  }

  async unpublish(id: string, pod?: string): Promise<void> {
    await this.node("NodeUnpublishVolume", { volume_id: id, target_path: this.targetPath(id, pod) });
  }

  async unstage(id: string): Promise<void> {
    await this.node("NodeUnstageVolume", { volume_id: id, staging_target_path: this.stagingPath(id) });
  }

  /** The LUKS UUID (= key id) on a volume's disk, read from the file itself. */
  async luksUuid(id: string): Promise<string | undefined> {
    const probe = blkid.parseProbe(await run(blkid.probe(this.volumeFile(id))));
    return probe.kind === "found" ? probe.fields["UUID"] : undefined;
  }
}

export function mapperExists(id: string): boolean {
  return existsSync(`/dev/mapper/cloak-${id}`);
}

/** Whether `needle` occurs anywhere in the file: the test of "is the plaintext on the disk?". */
export async function fileContains(file: string, needle: string): Promise<boolean> {
  return (await readFile(file)).includes(Buffer.from(needle));
}

export async function attachedLoops(file: string): Promise<string[]> {
  const result = await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", file] });
  return result.stdout.split("\n").filter((line) => line.startsWith("/dev/"));
}
