import { InvalidArgumentError } from "../../lib/errors.js";

/**
 * Volume ids of a wrapped driver are the inner driver's, unchanged: often long and full of
 * slashes (`projects/p/zones/z/disks/d`, Azure's 180-character resource ids, past CSI's
 * 128-byte guideline). cloak never makes a path or a device name of one directly (layout.ts
 * and mapperName hash them), so any id is accepted that is non-empty, of bounded length and
 * free of control characters, which have no place in a log line or an event.
 */
const MAX_ID_BYTES = 1024;

export function wrappedVolumeId(value: string, field = "volume_id"): string {
  if (value === "") throw new InvalidArgumentError(`${field} is required`);
  if (Buffer.byteLength(value) > MAX_ID_BYTES) throw new InvalidArgumentError(`${field} is longer than ${MAX_ID_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new InvalidArgumentError(`${field} contains control characters`);
  return value;
}
