import { lstat, readlink, realpath, stat } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { FailedPreconditionError } from "../../lib/errors.js";
import { deviceNumber } from "../node/mounts.js";

/**
 * The block device a wrapped driver placed at `path`, as /dev/<kernel name>: the name sysfs
 * (and so mappingStatus, which compares with it) uses for the device, not the path, which the
 * driver may take away at NodeUnpublish while the mapping still holds the device.
 *
 * Refused, with FailedPrecondition: nothing at the path, anything that is not a block device
 * (the driver served a filesystem, or wrote a file), a symbolic link (to a device or file
 * outside cloak's directory), and a path whose directories below `root` were replaced by links.
 */
export async function blockDeviceAt(path: string, root: string): Promise<string> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) throw new FailedPreconditionError(`the inner driver's NodePublishVolume succeeded but placed nothing at ${path}`);
  if (info.isSymbolicLink()) {
    const to = await readlink(path).catch(() => "?");
    throw new FailedPreconditionError(
      `the inner driver placed a symbolic link at ${path} (to ${to}), not a block device: cloak opens only the device node at the path it gave`,
    );
  }
  if (!info.isBlockDevice()) {
    throw new FailedPreconditionError(
      `the inner driver placed ${kindOf(info)} at ${path}, not a block device: cloak wraps only drivers that serve block volumes`,
    );
  }
  await checkNoLinkBelow(root, path);
  const number = await deviceNumber(path);
  const name = basename(await readlink(`/sys/dev/block/${number}`).catch(() => ""));
  if (name === "") throw new FailedPreconditionError(`the device ${number} at ${path} is not in /sys/dev/block`);
  const node = `/dev/${name}`;
  const nodeInfo = await stat(node).catch(() => undefined);
  if (!nodeInfo?.isBlockDevice() || nodeInfo.rdev !== info.rdev) {
    throw new FailedPreconditionError(`there is no device node ${node} for device ${number} here: cloak's container needs the host's /dev`);
  }
  return node;
}

/** The block device at `path`, or undefined: for stats and retries, which only look. */
export async function blockDeviceIfAny(path: string, root: string): Promise<string | undefined> {
  try {
    return await blockDeviceAt(path, root);
  } catch {
    return undefined;
  }
}

/**
 * FailedPrecondition unless `path` resolves to where it says below `root`: no directory cloak
 * made there was replaced by a link. `root` itself may lie behind links (a kubelet directory
 * that is a symlink to another disk), as the allowed roots of csi/validate.ts may.
 */
export async function checkNoLinkBelow(root: string, path: string): Promise<void> {
  const [real, realRoot] = await Promise.all([realpath(path), realpath(root)]);
  const expected = join(realRoot, relative(root, path));
  if (real !== expected) {
    throw new FailedPreconditionError(`${path} resolves to ${real}, not ${expected}: a directory on the way was replaced by a link; refusing it`);
  }
}

function kindOf(info: { isDirectory(): boolean; isFile(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (info.isDirectory()) return "a directory";
  if (info.isFile()) return "a regular file";
  if (info.isCharacterDevice()) return "a character device";
  if (info.isFIFO()) return "a FIFO";
  if (info.isSocket()) return "a socket";
  return "something";
}
