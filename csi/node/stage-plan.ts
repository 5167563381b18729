import { describeSignature, type ProbeResult } from "../tools/blkid.js";
import { FILESYSTEMS, isFilesystem, type Filesystem } from "../tools/mkfs.js";
import type { LuksLabel } from "../luks/policy.js";

/**
 * What staging should do with a volume's raw disk and with the decrypted device, decided from
 * what was observed. Pure: the effects live in stage.ts. The rule both functions serve is
 * that nothing holding data is ever formatted.
 */

export type DevicePlan =
  /** `uuid`: keep the UUID (the key id) of a format that was cut off and is redone. */
  | { readonly action: "format"; readonly uuid?: string | undefined }
  | { readonly action: "open"; readonly uuid: string; readonly label: string | undefined; readonly subsystem: string | undefined }
  | { readonly action: "refuse"; readonly reason: string };

/**
 * @param probe blkid's low-level probe of the raw disk
 * @param firstNonZeroByte offset of the first non-zero byte in the regions of the disk that
 *   were read (its start and end), or undefined when they were all zero
 */
export function planDevice(probe: ProbeResult, firstNonZeroByte: number | undefined): DevicePlan {
  switch (probe.kind) {
    case "ambivalent":
      return { action: "refuse", reason: "the disk carries several conflicting signatures; refusing to touch it" };
    case "empty":
      if (firstNonZeroByte !== undefined) {
        return {
          action: "refuse",
          reason: `the disk holds data that no known signature describes (non-zero byte at offset ${firstNonZeroByte}); refusing to format it`,
        };
      }
      return { action: "format" };
    case "found": {
      const { fields } = probe;
      if (fields["TYPE"] === "crypto_LUKS") {
        if (fields["VERSION"] !== "2") {
          return { action: "refuse", reason: `the disk holds a LUKS${fields["VERSION"] ?? "?"} header; cloak opens only LUKS2` };
        }
        const uuid = fields["UUID"];
        if (!uuid) return { action: "refuse", reason: "the disk's LUKS2 header has no UUID" };
        return { action: "open", uuid, label: fields["LABEL"], subsystem: fields["SUBSYSTEM"] };
      }
      return { action: "refuse", reason: `the disk holds ${describeSignature(fields)}; refusing to format it` };
    }
  }
}

export type FilesystemPlan =
  | { readonly action: "mkfs"; readonly fsType: Filesystem }
  | { readonly action: "mount"; readonly fsType: Filesystem }
  | { readonly action: "refuse"; readonly reason: string };

export const DEFAULT_FILESYSTEM: Filesystem = "ext4";

/**
 * @param probe blkid's probe of the decrypted device
 * @param label the LUKS2 header label: only a "fresh" volume (never handed out) may get a
 *   filesystem. A volume used as a raw block device shows no signature but holds data.
 * @param wanted the filesystem the request asks for, if it names one
 */
export function planFilesystem(probe: ProbeResult, label: string | undefined, wanted: Filesystem | undefined): FilesystemPlan {
  switch (probe.kind) {
    case "ambivalent":
      return { action: "refuse", reason: "the decrypted volume carries several conflicting signatures; refusing to mount or format it" };
    case "empty":
      if (label !== ("fresh" satisfies LuksLabel)) {
        return {
          action: "refuse",
          reason: "the volume has been used before (LUKS label " + JSON.stringify(label ?? "") + ") but holds no filesystem, " +
            "e.g. it was a block volume; refusing to format it",
        };
      }
      return { action: "mkfs", fsType: wanted ?? DEFAULT_FILESYSTEM };
    case "found": {
      const found = probe.fields["TYPE"];
      if (found === undefined || !isFilesystem(found)) {
        return { action: "refuse", reason: `the decrypted volume holds ${describeSignature(probe.fields)}, not ${FILESYSTEMS.join(" or ")}` };
      }
      if (wanted !== undefined && wanted !== found) {
        return { action: "refuse", reason: `the volume holds an ${found} filesystem but ${wanted} was requested` };
      }
      return { action: "mount", fsType: found };
    }
  }
}
