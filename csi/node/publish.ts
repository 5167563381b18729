import { stat as fsStat, mkdir, open, rmdir, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { AlreadyExistsError, FailedPreconditionError } from "../../lib/errors.js";
import { mapperPath } from "../luks/luks-device.js";
import { bindMount } from "../tools/mount.js";
import type { Access } from "../validate.js";
import { deviceNumber, topMountAt, unmountAll } from "./mounts.js";

export interface PublishRequest {
  readonly volumeId: string;
  readonly stagingPath: string;
  readonly targetPath: string;
  readonly access: Access;
  readonly readOnly: boolean;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * NodePublishVolume's effects: a bind mount of the staged filesystem (mount access) or of the
 * decrypted device node (block access) at the target path, which is created here. Repeating a
 * publish that already happened is a no-op; publishing differently at the same path is
 * AlreadyExists, as the CSI spec asks.
 */
export async function publishVolume(run: Runner, request: PublishRequest): Promise<void> {
  const { targetPath, signal } = request;
  const readOnly = request.readOnly || request.access.mode === "SINGLE_NODE_READER_ONLY";
  const decrypted = mapperPath(request.volumeId);
  const decryptedDevice = await deviceNumber(decrypted).catch(() => {
    throw new FailedPreconditionError(`volume ${request.volumeId} is not staged on this node (no ${decrypted})`);
  });

  let source: string;
  if (request.access.kind === "mount") {
    const staged = await topMountAt(request.stagingPath);
    if (!staged || staged.device !== decryptedDevice) {
      throw new FailedPreconditionError(`volume ${request.volumeId} is not staged at ${request.stagingPath}`);
    }
    source = request.stagingPath;
    await mkdir(targetPath, { recursive: true });
  } else {
    source = decrypted;
    await mkdir(dirname(targetPath), { recursive: true });
    await (await open(targetPath, "a")).close();
  }

  const existing = await topMountAt(targetPath);
  if (existing) {
    const same =
      request.access.kind === "mount"
        ? existing.device === decryptedDevice && existing.root === "/"
        : await isDeviceNode(targetPath, decrypted);
    if (!same) throw new AlreadyExistsError(`${targetPath} is already a mount point of something else`);
    if (existing.options.includes("ro") !== readOnly) {
      throw new AlreadyExistsError(`volume ${request.volumeId} is already published at ${targetPath} ${readOnly ? "read-write" : "read-only"}`);
    }
    return;
  }
  await run(bindMount({ source, target: targetPath, readOnly }), { signal });
  request.log.info({ targetPath, readOnly }, "published");
}

/** True when `path` is (a bind mount of) the device node `device`. */
async function isDeviceNode(path: string, device: string): Promise<boolean> {
  const [a, b] = await Promise.all([fsStat(path), fsStat(device)]);
  return a.isBlockDevice() && a.rdev === b.rdev;
}

/**
 * NodeUnpublishVolume's effects: unmount whatever cloak mounted at the target, then remove the
 * directory or file it created. A target that is already gone is success.
 */
export async function unpublishVolume(
  run: Runner,
  request: { targetPath: string; signal: AbortSignal; log: Logger },
): Promise<void> {
  const { targetPath, signal } = request;
  const unmounted = await unmountAll(run, targetPath, signal);
  const info = await fsStat(targetPath).catch(() => undefined);
  // rmdir, not a recursive delete: a target that still holds files after the unmount is not
  // cloak's to empty.
  const remove = info?.isDirectory() ? rmdir : info ? unlink : undefined;
  await remove?.(targetPath).catch((err: NodeJS.ErrnoException) => {
    throw new FailedPreconditionError(`cannot remove ${targetPath} after unmounting it: ${err.code ?? err.message}`);
  });
  if (unmounted > 0) request.log.info({ targetPath }, "unpublished");
}
