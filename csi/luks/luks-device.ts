import { createHash, randomUUID } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { exitedWith, type Runner } from "../../lib/exec.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import { VOLUME_PASSPHRASE_BYTES, type KeySource } from "../keys/key-source.js";
import * as cryptsetup from "./cryptsetup.js";
import { headerVerdict, parseHeaderArea, type HeaderParse } from "./header.js";
import { readHeaderArea } from "./header-read.js";
import { wipingLabel, type HeaderVerdict, type LuksLabel } from "./policy.js";

/**
 * The effects on a LUKS2 device: format, check, open, close, relabel, resize. Keys are fetched
 * here, used once, and zeroed.
 */
export interface LuksDeviceOptions {
  readonly run: Runner;
  readonly keys: KeySource;
  readonly bypassWorkqueues: boolean;
}

type Signal = AbortSignal | undefined;

export class LuksDevices {
  constructor(private readonly options: LuksDeviceOptions) {}

  /**
   * Formats an empty disk. The LUKS UUID is the key id, so every volume gets its own key and a
   * copy of the volume (clone, restore) keeps opening with it: the controller chooses it at
   * CreateVolume (and records it), a format that was cut off is redone with the UUID it had,
   * and a volume made before key binding gets a random one here. An integrity volume is
   * labelled "wiping:0": its tags are initialised next (integrity-wipe.ts).
   */
  async format(device: string, options: { integrity: boolean; uuid?: string | undefined }, signal: Signal): Promise<string> {
    const uuid = options.uuid ?? randomUUID();
    const label = options.integrity ? wipingLabel(0) : "fresh";
    await this.withKey(uuid, signal, (passphrase) =>
      this.options.run(cryptsetup.luksFormat({ device, uuid, passphrase, integrity: options.integrity, label }), { signal }),
    );
    return uuid;
  }

  /** The header's policy verdict; throws FailedPrecondition when it must not be opened. */
  async checkHeader(device: string, signal: Signal): Promise<HeaderVerdict> {
    const verdict = await this.inspectHeader(device, signal);
    if (verdict.violations.length > 0) {
      throw new FailedPreconditionError(
        `the LUKS2 header on ${device} does not match cloak's policy and will not be opened: ${verdict.violations.join("; ")}`,
      );
    }
    return verdict;
  }

  /** Read in process (header.ts), not through `cryptsetup luksDump`: one process fewer per stage. */
  async inspectHeader(device: string, signal: Signal): Promise<HeaderVerdict> {
    return headerVerdict(await readHeaderArea(device, signal));
  }

  /**
   * Both copies of the header, read in process and checked as cryptsetup checks them; `header`
   * is the copy cryptsetup uses (header.ts). For the decisions made before the policy check: a
   * cut-off format, how far an integrity wipe got.
   */
  async readHeader(device: string, signal: Signal): Promise<HeaderParse> {
    return parseHeaderArea(await readHeaderArea(device, signal));
  }

  async open(spec: { device: string; name: string; uuid: string; integrityNoJournal?: boolean }, signal: Signal): Promise<void> {
    try {
      await this.withKey(spec.uuid, signal, (passphrase) =>
        this.options.run(
          cryptsetup.luksOpen({
            device: spec.device,
            name: spec.name,
            passphrase,
            bypassWorkqueues: this.options.bypassWorkqueues,
            integrityNoJournal: spec.integrityNoJournal ?? false,
          }),
          { signal },
        ),
      );
    } catch (err) {
      if (exitedWith(err, cryptsetup.CRYPTSETUP_EXIT.noPermission)) {
        throw new FailedPreconditionError(
          `the key from the ${this.options.keys.kind} key source does not open ${spec.device} (key id ${spec.uuid}): ` +
            "wrong key, or the key source's master secret is not the one this volume was made with; the device was not changed",
          { cause: err },
        );
      }
      throw err;
    }
  }

  async close(name: string, signal: Signal): Promise<void> {
    try {
      await this.options.run(cryptsetup.luksClose(name), { signal });
    } catch (err) {
      if (exitedWith(err, cryptsetup.CRYPTSETUP_EXIT.deviceBusy)) {
        throw new FailedPreconditionError(`${name} is still in use (published somewhere, or open by a process); unpublish it first`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /** Whether `device` (a block device or an image file) starts with a LUKS2 header. */
  async isLuks(device: string, signal: Signal): Promise<boolean> {
    const result = await this.options.run(cryptsetup.isLuks2(device), { signal });
    return result.exitCode === 0;
  }

  /** The label of the copy of the LUKS2 header cryptsetup uses on `device` (a block device or an image file), if it has one. */
  async label(device: string, signal: Signal): Promise<string | undefined> {
    const parsed = await this.readHeader(device, signal);
    return parsed.ok ? parsed.header.label : undefined;
  }

  async setLabel(device: string, label: LuksLabel, signal: Signal): Promise<void> {
    await this.options.run(cryptsetup.setLabel(device, label), { signal });
  }

  async resize(name: string, uuid: string, signal: Signal): Promise<void> {
    await this.withKey(uuid, signal, (passphrase) => this.options.run(cryptsetup.resize(name, passphrase), { signal }));
  }

  private async withKey<T>(keyId: string, signal: Signal, use: (passphrase: Buffer) => Promise<T>): Promise<T> {
    const passphrase = await this.options.keys.getKey(keyId, VOLUME_PASSPHRASE_BYTES, { signal });
    try {
      return await use(passphrase);
    } finally {
      passphrase.fill(0);
    }
  }
}

/**
 * The device-mapper name of a volume's decrypted device. dm names stop at 127 bytes and hold
 * no "/"; longer ids, and ids that are not plain names (a wrapped cloud driver's), are hashed
 * so that the name stays unique and stable.
 */
export function mapperName(volumeId: string): string {
  const name = `cloak-${volumeId}`;
  return name.length <= 100 && /^[A-Za-z0-9._-]+$/.test(volumeId) ? name : `cloak-${createHash("sha256").update(volumeId).digest("hex").slice(0, 40)}`;
}

export function mapperPath(volumeId: string): string {
  return `/dev/mapper/${mapperName(volumeId)}`;
}

export interface MappingStatus {
  readonly active: boolean;
  /** The device under the mapping, e.g. /dev/loop3. */
  readonly device?: string;
}

/**
 * Whether the mapping `name` exists, and on which device. Read from sysfs rather than asked
 * of `cryptsetup status`: the answer is the same, and every stage and unstage asks. Finds a
 * device-mapper device by name in /sys/block/dm-N/dm/name and its backing device in
 * /sys/block/dm-N/slaves/. Works without udev and without device-mapper loaded (then there
 * are no dm-N entries, and nothing can be open).
 */
export async function mappingStatus(name: string, sysBlock = "/sys/block"): Promise<MappingStatus> {
  const entries = await readdir(sysBlock).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => e.startsWith("dm-"))) {
    const found = (await readFile(join(sysBlock, entry, "dm", "name"), "utf8").catch(() => "")).trim();
    if (found !== name) continue;
    const device = await bottomDevice(sysBlock, entry);
    return device === undefined ? { active: true } : { active: true, device: `/dev/${device}` };
  }
  return { active: false };
}

/**
 * The device at the bottom of a dm stack: an integrity volume's crypt mapping sits on its
 * dm-integrity mapping (`<name>_dif`), which sits on the disk.
 */
async function bottomDevice(sysBlock: string, entry: string): Promise<string | undefined> {
  const slaves = await readdir(join(sysBlock, entry, "slaves")).catch(() => [] as string[]);
  const [slave] = slaves;
  if (slaves.length !== 1 || slave === undefined) return undefined;
  return slave.startsWith("dm-") ? bottomDevice(sysBlock, slave) : slave;
}
