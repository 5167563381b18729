import { existsSync } from "node:fs";
import { mkdir, open, readFile, truncate } from "node:fs/promises";
import { join } from "node:path";
import { createRunner, type Runner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { createFileKeySource } from "../../../csi/keys/file-key-source.js";
import { PluginHarness } from "../../support/plugin-harness.js";
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
export class CsiFixture extends PluginHarness {
  constructor() {
    // The guest's tmpfs holds about 1 GiB, less than a test file's volumes would take if
    // their sparse disks were full: the accounting is told so (capacity tests are host-tier).
    super("cloak-vm-csi-", {}, ["--overcommit-ratio", "8"]);
  }

  override async setUp(): Promise<void> {
    requireDmCrypt();
    await super.setUp();
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

/** The key the file key source derives for `uuid` from the fixture's key directory. */
export async function keyFor(fx: CsiFixture, uuid: string): Promise<Buffer> {
  const keys = await createFileKeySource({ dir: fx.keyDir });
  try {
    return await keys.getKey(uuid, 32);
  } finally {
    await keys.close();
  }
}
