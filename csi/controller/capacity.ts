import { InvalidArgumentError, OutOfRangeError } from "../../lib/errors.js";
import type { Filesystem } from "../tools/mkfs.js";
import type { Access } from "../validate.js";

export const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The LUKS2 header and keyslot area cloak formats: the data segment starts here. */
export const LUKS_HEADER_BYTES = 16 * MiB;
/** What a volume gets when the CO does not say. */
export const DEFAULT_VOLUME_BYTES = GiB;
/** dm-crypt with 4 KiB sectors needs whole sectors. */
export const SECTOR_BYTES = 4096;

/**
 * The smallest decrypted device each filesystem is made on, measured with Debian 12's tools
 * on 4 KiB-sector devices. mke2fs makes an ext4 down to 256 KiB, but below 2048 blocks
 * (8 MiB) it silently leaves out the journal, which would make a crash lose what a journal
 * keeps; mkfs.xfs (since xfsprogs 5.19) refuses anything under 300 MiB.
 */
export const FILESYSTEM_MINIMUM_BYTES: Readonly<Record<Filesystem, number>> = {
  ext4: 8 * MiB,
  xfs: 300 * MiB,
};

/**
 * dm-integrity keeps a 32-byte HMAC tag per 4 KiB sector (0.8 %) and a journal; measured on
 * Debian's 6.1 kernel with cryptsetup 2.6, a volume loses 1.6 % of its data area. 3 % plus
 * 4 MiB leaves room for other kernels' layouts, so the decrypted device is never smaller than
 * what was asked for.
 */
export function integrityOverheadBytes(dataBytes: number): number {
  return alignUp(Math.ceil(dataBytes * 0.03) + 4 * MiB, MiB);
}

export interface CapacityRange {
  readonly requiredBytes: number;
  /** 0: no limit. */
  readonly limitBytes: number;
}

/**
 * A CSI capacity range as numbers. A required size beyond what a JavaScript number holds
 * exactly (8 PiB) is one no cloak volume can have: OutOfRange, as the spec answers a capacity
 * the plugin cannot provide. A limit that large limits nothing.
 */
export function parseCapacityRange(range: { required_bytes?: string | number; limit_bytes?: string | number } | null | undefined): CapacityRange {
  return {
    requiredBytes: byteCount(range?.required_bytes, "capacity_range.required_bytes", "refuse"),
    limitBytes: byteCount(range?.limit_bytes, "capacity_range.limit_bytes", "clamp"),
  };
}

function byteCount(value: string | number | undefined, field: string, beyond: "refuse" | "clamp"): number {
  const text = String(value ?? "0");
  if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError(`${field} is not an integer: ${text}`);
  const n = BigInt(text);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
    if (beyond === "clamp") return Number.MAX_SAFE_INTEGER;
    throw new OutOfRangeError(`${field} ${text} is more than any cloak volume can hold`);
  }
  if (n < 0n) throw new OutOfRangeError(`${field} must not be negative`);
  return Number(n);
}

/**
 * The smallest capacity a new volume may have so that every capability asked for can be
 * staged: the requested (or default) filesystem's minimum for mount access, one sector for
 * block access.
 */
export function minimumCapacityBytes(capabilities: readonly Access[], defaultFsType: Filesystem): number {
  let minimum = SECTOR_BYTES;
  for (const access of capabilities) {
    if (access.kind === "mount") minimum = Math.max(minimum, FILESYSTEM_MINIMUM_BYTES[access.fsType ?? defaultFsType]);
  }
  return minimum;
}

export interface Sizing {
  /**
   * What the CO is told, and promised: the decrypted device holds at least this much. It is
   * the size asked for (raised to the filesystem's minimum), not rounded to the sector the
   * device really ends on, so a request for an odd size is answered with that size.
   */
  readonly capacityBytes: number;
  /** What the disk source provides: the capacity in whole sectors, plus header (plus integrity's share). */
  readonly diskBytes: number;
}

/**
 * Turns a CSI capacity range into the volume's size. The header comes on top of what was
 * asked for, so a request for 1 GiB gets a 1 GiB filesystem (as Longhorn does since 1.12;
 * Constellation instead reports the disk minus the header). A request below `minimumBytes`
 * gets the minimum, because a volume that can never be staged must never be created; when
 * `limit_bytes` forbids that, or forbids the sector the size rounds up to, OutOfRange.
 */
export function sizeFor(range: CapacityRange, options: { integrity: boolean; minimumBytes: number }): Sizing {
  const { requiredBytes, limitBytes } = range;
  if (requiredBytes < 0 || limitBytes < 0) throw new OutOfRangeError("capacity_range values must not be negative");
  if (limitBytes > 0 && requiredBytes > limitBytes) {
    throw new OutOfRangeError(`capacity_range.required_bytes ${requiredBytes} exceeds limit_bytes ${limitBytes}`);
  }
  const minimum = alignUp(options.minimumBytes, SECTOR_BYTES);
  const wanted =
    requiredBytes > 0 ? requiredBytes : limitBytes > 0 ? alignDown(Math.min(DEFAULT_VOLUME_BYTES, limitBytes), SECTOR_BYTES) : DEFAULT_VOLUME_BYTES;
  const capacityBytes = Math.max(wanted, minimum);
  const deviceBytes = alignUp(capacityBytes, SECTOR_BYTES);
  if (limitBytes > 0 && deviceBytes > limitBytes) {
    const why = capacityBytes > wanted ? `the smallest this volume's filesystem can be made on is ${minimum} bytes` : "volumes are made of whole 4 KiB sectors";
    throw new OutOfRangeError(`no volume between ${requiredBytes} and ${limitBytes} bytes can be made: ${why}`);
  }
  const dataBytes = deviceBytes + (options.integrity ? integrityOverheadBytes(deviceBytes) : 0);
  return { capacityBytes, diskBytes: LUKS_HEADER_BYTES + dataBytes };
}

/** Whether an existing volume of `capacityBytes` satisfies a (repeated) request's range. */
export function satisfies(capacityBytes: number, range: CapacityRange): boolean {
  return capacityBytes >= range.requiredBytes && (range.limitBytes === 0 || capacityBytes <= range.limitBytes);
}

/**
 * Capacity accounting. Disks are sparse, so free space says nothing about what has been
 * promised: the pool is what the disk source can hold for cloak's disks, scaled by the
 * configured overcommit ratio, and every disk's full size counts against it.
 */
export function promisableBytes(poolBytes: number, overcommitRatio: number, provisionedDiskBytes: number): number {
  return Math.max(0, Math.floor(poolBytes * overcommitRatio) - provisionedDiskBytes);
}

/** The largest capacity whose disk fits in `diskBytes`, or 0 when not even `minimumBytes` does. */
export function largestCapacity(diskBytes: number, options: { integrity: boolean; minimumBytes: number }): number {
  const data = diskBytes - LUKS_HEADER_BYTES;
  let capacity = alignDown(options.integrity ? (data - 4 * MiB) / 1.03 : data, SECTOR_BYTES);
  // The estimate for integrity is within a MiB of the answer: step down until it fits.
  while (capacity > 0 && sizeFor({ requiredBytes: capacity, limitBytes: 0 }, { integrity: options.integrity, minimumBytes: 0 }).diskBytes > diskBytes) {
    capacity -= MiB;
  }
  return capacity >= Math.max(options.minimumBytes, SECTOR_BYTES) ? capacity : 0;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function alignDown(value: number, alignment: number): number {
  return Math.max(0, Math.floor(value / alignment) * alignment);
}
