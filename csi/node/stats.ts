import { stat, statfs } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import { NotFoundError } from "../../lib/errors.js";
import type { NodeDiskSource } from "../disk/disk-source.js";
import { type LuksDevices, mapperName, mapperPath, mappingStatus } from "../luks/luks-device.js";
import * as blockdev from "../tools/blockdev.js";
import type { NodeGetVolumeStatsResponse } from "../../proto/gen/csi/v1/NodeGetVolumeStatsResponse.js";
import { deviceNumber, topMountAt } from "./mounts.js";

export interface StatsDeps {
  readonly run: Runner;
  readonly luks: LuksDevices;
  readonly disks: NodeDiskSource;
}

/**
 * NodeGetVolumeStats: usage of the filesystem (bytes and inodes) or the size of the block
 * device, and the volume's condition. The condition is abnormal when the decrypted mapping is
 * gone from under a published volume, or when the LUKS2 header on the disk no longer passes
 * the policy (someone changed it while the volume was open).
 */
export async function volumeStats(
  deps: StatsDeps,
  request: { volumeId: string; volumePath: string; signal: AbortSignal },
): Promise<NodeGetVolumeStatsResponse> {
  const { volumeId, volumePath, signal } = request;
  const name = mapperName(volumeId);
  const [mapping, info] = await Promise.all([mappingStatus(name), stat(volumePath).catch(() => undefined)]);
  if (!info) throw new NotFoundError(`${volumePath} does not exist`);
  const mounted = await topMountAt(volumePath);
  if (!mapping.active) {
    if (!mounted) throw new NotFoundError(`volume ${volumeId} is not staged on this node`);
    return { usage: [], volume_condition: { abnormal: true, message: `the decrypted device ${name} is gone; the volume cannot be read or written` } };
  }

  const decrypted = await deviceNumber(mapperPath(volumeId));
  let usage: NodeGetVolumeStatsResponse["usage"];
  if (info.isBlockDevice()) {
    if (info.rdev !== (await stat(mapperPath(volumeId))).rdev) throw new NotFoundError(`${volumePath} is not volume ${volumeId}`);
    const total = blockdev.parseSize((await deps.run(blockdev.sizeInBytes(volumePath), { signal })).stdout);
    usage = [{ unit: "BYTES", total }];
  } else {
    if (!mounted || mounted.device !== decrypted) throw new NotFoundError(`volume ${volumeId} is not mounted at ${volumePath}`);
    const fs = await statfs(volumePath);
    usage = [
      { unit: "BYTES", total: fs.blocks * fs.bsize, available: fs.bavail * fs.bsize, used: (fs.blocks - fs.bfree) * fs.bsize },
      { unit: "INODES", total: fs.files, available: fs.ffree, used: fs.files - fs.ffree },
    ];
  }
  return { usage, volume_condition: await condition(deps, volumeId, mapping.device, signal) };
}

async function condition(
  deps: StatsDeps,
  volumeId: string,
  mappedDevice: string | undefined,
  signal: AbortSignal,
): Promise<{ abnormal: boolean; message: string }> {
  const disk = await deps.disks.findAttached(volumeId);
  if (!disk || disk !== mappedDevice) {
    return { abnormal: true, message: `the decrypted device is open on ${mappedDevice ?? "nothing"}, but the volume's disk is ${disk ?? "not attached"}` };
  }
  const verdict = await deps.luks.inspectHeader(disk, signal);
  if (verdict.violations.length > 0) {
    return { abnormal: true, message: `the LUKS2 header on the disk fails cloak's policy: ${verdict.violations.join("; ")}` };
  }
  return { abnormal: false, message: "encrypted volume is open and its header matches policy" };
}
