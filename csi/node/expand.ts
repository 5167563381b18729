import { stat } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { FailedPreconditionError, NotFoundError, OutOfRangeError } from "../../lib/errors.js";
import type { NodeDiskSource } from "../disk/disk-source.js";
import { type LuksDevices, mapperName, mapperPath, mappingStatus } from "../luks/luks-device.js";
import * as blkid from "../tools/blkid.js";
import * as blockdev from "../tools/blockdev.js";
import { growFilesystem, isFilesystem } from "../tools/mkfs.js";
import { topMountAt } from "./mounts.js";

export interface ExpandDeps {
  readonly run: Runner;
  readonly luks: LuksDevices;
  readonly disks: NodeDiskSource;
}

/**
 * NodeExpandVolume: after the controller grew the disk, make each layer see it — the loop
 * device (or whatever the disk source attached), the dm-crypt mapping, then the filesystem.
 * Every step is a no-op when already done, so a retry is safe. Returns the new size of the
 * decrypted device.
 */
export async function expandVolume(
  deps: ExpandDeps,
  request: { volumeId: string; volumePath: string; requiredBytes: number; signal: AbortSignal; deadline?: number | undefined; log: Logger },
): Promise<number> {
  const { volumeId, volumePath, signal, log } = request;
  const name = mapperName(volumeId);
  const mapping = await mappingStatus(name);
  if (!mapping.active || !mapping.device) throw new NotFoundError(`volume ${volumeId} is not staged on this node`);
  const info = await stat(volumePath).catch(() => undefined);
  if (!info) throw new NotFoundError(`${volumePath} does not exist`);

  const verdict = await deps.luks.checkHeader(mapping.device, signal);
  if (verdict.integrity) {
    throw new FailedPreconditionError(
      `volume ${volumeId} uses dm-integrity, which cannot be grown in place: its tags are laid out for the original size`,
    );
  }
  const probe = blkid.parseProbe(await deps.run(blkid.probe(mapping.device), { signal }));
  const uuid = probe.kind === "found" ? probe.fields["UUID"] : undefined;
  if (!uuid) throw new FailedPreconditionError(`cannot read the LUKS UUID of ${mapping.device}`);

  await deps.disks.refreshSize({ volumeId, requiredBytes: request.requiredBytes, signal, deadline: request.deadline });
  await deps.luks.resize(name, uuid, signal);

  const decrypted = mapperPath(volumeId);
  if (!info.isBlockDevice()) {
    const mounted = await topMountAt(volumePath);
    if (!mounted) throw new NotFoundError(`volume ${volumeId} is not mounted at ${volumePath}`);
    if (!isFilesystem(mounted.fsType)) throw new FailedPreconditionError(`${volumePath} holds ${mounted.fsType}, which cloak cannot grow`);
    await deps.run(growFilesystem(mounted.fsType, decrypted, volumePath), { signal });
  }
  const capacity = blockdev.parseSize((await deps.run(blockdev.sizeInBytes(decrypted), { signal })).stdout);
  if (request.requiredBytes > capacity) {
    throw new OutOfRangeError(`volume ${volumeId} is ${capacity} bytes after expansion, less than the ${request.requiredBytes} required; was the disk grown?`);
  }
  log.info({ capacity }, "expanded");
  return capacity;
}
