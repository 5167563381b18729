import { join } from "node:path";

/**
 * Where the local source keeps a volume: `<dir>/<volumeId>.img` for the disk. Volume ids are
 * validated (csi/validate.ts) before they get here, so they cannot leave `dir`.
 */
export function volumeImagePath(dir: string, volumeId: string): string {
  return join(dir, `${volumeId}.img`);
}
