import { OutOfRangeError } from "../../lib/errors.js";

export const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The LUKS2 header and keyslot area cloak formats: the data segment starts here. */
export const LUKS_HEADER_BYTES = 16 * MiB;
/** What a volume gets when the CO does not say. */
export const DEFAULT_VOLUME_BYTES = GiB;
/** dm-crypt with 4 KiB sectors needs whole sectors. */
const ALIGNMENT = 4096;

/**
 * dm-integrity keeps a 32-byte HMAC tag per 4 KiB sector (0.8 %) and a journal; measured on
 * Debian's 6.1 kernel with cryptsetup 2.6, a volume loses 1.6 % of its data area. 3 % plus
 * 4 MiB leaves room for other kernels' layouts, so the decrypted device is never smaller than
 * what was asked for.
 */
export function integrityOverheadBytes(dataBytes: number): number {
  return alignUp(Math.ceil(dataBytes * 0.03) + 4 * MiB, MiB);
}

export interface Sizing {
  /** What the user gets and the CO is told: the size of the decrypted device, at least. */
  readonly capacityBytes: number;
  /** What the disk source provides: capacity plus header (plus integrity's share). */
  readonly diskBytes: number;
}

/**
 * Turns a CSI capacity range into the volume's size. The header comes on top of what was
 * asked for, so a request for 1 GiB gets a 1 GiB filesystem (as Longhorn does since 1.12;
 * Constellation instead reports the disk minus the header).
 */
export function sizeFor(range: { requiredBytes: number; limitBytes: number }, integrity: boolean): Sizing {
  const { requiredBytes, limitBytes } = range;
  if (requiredBytes < 0 || limitBytes < 0) throw new OutOfRangeError("capacity_range values must not be negative");
  if (limitBytes > 0 && requiredBytes > limitBytes) {
    throw new OutOfRangeError(`capacity_range.required_bytes ${requiredBytes} exceeds limit_bytes ${limitBytes}`);
  }
  const wanted = requiredBytes > 0 ? requiredBytes : limitBytes > 0 ? Math.min(DEFAULT_VOLUME_BYTES, limitBytes) : DEFAULT_VOLUME_BYTES;
  const capacityBytes = alignUp(wanted, ALIGNMENT);
  if (limitBytes > 0 && capacityBytes > limitBytes) {
    throw new OutOfRangeError(`no size between ${requiredBytes} and ${limitBytes} bytes is a whole number of 4 KiB sectors`);
  }
  const dataBytes = capacityBytes + (integrity ? integrityOverheadBytes(capacityBytes) : 0);
  return { capacityBytes, diskBytes: LUKS_HEADER_BYTES + dataBytes };
}

/** Whether an existing volume of `capacityBytes` satisfies a (repeated) request's range. */
export function satisfies(capacityBytes: number, range: { requiredBytes: number; limitBytes: number }): boolean {
  return capacityBytes >= range.requiredBytes && (range.limitBytes === 0 || capacityBytes <= range.limitBytes);
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
