import { mkdir } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import type { IdentityHandlers } from "../../proto/gen/csi/v1/Identity.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import type { NodeDiskSource } from "../../csi/disk/disk-source.js";
import { checkFilesystem } from "../../csi/node/fsck.js";
import { topMountAt, unmountAll } from "../../csi/node/mounts.js";
import * as blkid from "../../csi/tools/blkid.js";
import { isFilesystem, mkfs } from "../../csi/tools/mkfs.js";
import { mountFilesystem } from "../../csi/tools/mount.js";
import * as validate from "../../csi/validate.js";

/**
 * The plain baseline of the stage benchmark: what a CSI node plugin without encryption does to
 * stage a local volume, on the same disk source and with the same command builders, Runner,
 * gRPC handler wrapper and transport as cloak. It is Kubernetes' SafeFormatAndMount (the
 * mount-utils code most CSI drivers call) on a loop-attached file:
 *
 *   attach the file (losetup --associated, then losetup --find --show if not attached)
 *   blkid -p the device; no signature → mkfs; a filesystem → keep it (and, for a read-write
 *   stage, check it: mount-utils runs `fsck -a` there, cloak the same checker, csi/node/fsck.ts);
 *   anything else → refuse
 *   mkdir the staging path, mount
 *
 * Unstage: unmount if mounted, detach. No volume locks (microseconds in-process in cloak) and
 * no key, LUKS header check, mapping, or label: those are what encryption adds.
 */
export interface PlainNodeOptions {
  readonly run: Runner;
  readonly disks: NodeDiskSource;
  readonly allowedPathRoots: readonly string[];
}

export function createPlainNodeService(options: PlainNodeOptions): AsyncHandlers<NodeHandlers> {
  const { run, disks, allowedPathRoots } = options;
  return {
    async NodeStageVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const stagingPath = validate.hostPath(req.staging_target_path, "staging_target_path", allowedPathRoots);
      const access = validate.capability(req.volume_capability);
      if (access.kind !== "mount") throw new FailedPreconditionError("the plain baseline stages mount volumes only");
      const device = await disks.attach({ volumeId, stagingPath, access, volumeContext: {}, publishContext: {}, secrets: {}, signal });
      if (await topMountAt(stagingPath)) return {};

      const probe = blkid.parseProbe(await run(blkid.probe(device), { signal }));
      const wanted = access.fsType ?? "ext4";
      let fsType = wanted;
      if (probe.kind === "empty") {
        await run(mkfs(wanted, device), { signal });
        log.info({ device, fsType }, "created filesystem");
      } else {
        const found = probe.kind === "found" ? probe.fields["TYPE"] : undefined;
        if (found === undefined || !isFilesystem(found)) throw new FailedPreconditionError(`volume ${volumeId} holds no ext4 or xfs filesystem`);
        fsType = found;
        if (access.mode !== "SINGLE_NODE_READER_ONLY") await checkFilesystem(run, { fsType, device, volumeId, signal, log });
      }
      await mkdir(stagingPath, { recursive: true });
      await run(mountFilesystem({ device, target: stagingPath, fsType, options: access.mountFlags }), { signal });
      log.info({ device, stagingPath }, "mounted");
      return {};
    },

    async NodeUnstageVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const stagingPath = validate.hostPath(req.staging_target_path, "staging_target_path", allowedPathRoots);
      if (await unmountAll(run, stagingPath, signal)) log.info({ stagingPath }, "unmounted");
      await disks.detach({ volumeId, stagingPath, signal });
      return {};
    },
  };
}

export function createPlainIdentityService(): AsyncHandlers<IdentityHandlers> {
  return {
    async GetPluginInfo() {
      return { name: "plain.baseline.bench.cloak.dev", vendor_version: "0" };
    },
  };
}
