import { mkdir } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import type { AttachRequest, NodeDiskSource } from "../disk/disk-source.js";
import { failpoint } from "../failpoints.js";
import { type LuksDevices, mapperName, mapperPath, mappingStatus } from "../luks/luks-device.js";
import * as blkid from "../tools/blkid.js";
import * as blockdev from "../tools/blockdev.js";
import { growFilesystem, implicitMountOptions, isFilesystem, mkfs, type Filesystem } from "../tools/mkfs.js";
import { mountFilesystem } from "../tools/mount.js";
import type { Access } from "../validate.js";
import { firstNonZeroByte } from "./disk-content.js";
import { deviceNumber, topMountAt, unmountAll } from "./mounts.js";
import { planDevice, planFilesystem } from "./stage-plan.js";

export interface StageDeps {
  readonly run: Runner;
  readonly luks: LuksDevices;
  readonly disks: NodeDiskSource;
}

export interface StageRequest {
  readonly volumeId: string;
  readonly stagingPath: string;
  readonly access: Access;
  /** The filesystem the controller recorded for the volume, used when the capability names none. */
  readonly contextFsType: Filesystem | undefined;
  /** Whether the controller created the volume with dm-integrity. */
  readonly integrity: boolean;
  /** What the disk source needs to attach the disk. */
  readonly disk: AttachRequest;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * NodeStageVolume's effects, written so that a call interrupted at any point (the process
 * killed, the deadline passed) finishes correctly when repeated: each step first looks at
 * what is already there and continues from it. Failpoints mark the step boundaries the crash
 * tests cut at.
 */
export async function stageVolume(deps: StageDeps, request: StageRequest): Promise<void> {
  const { volumeId, signal, log } = request;
  const device = await deps.disks.attach(request.disk);
  failpoint("stage:after-attach");

  const name = mapperName(volumeId);
  const mapping = await mappingStatus(name);
  const probe = blkid.parseProbe(await deps.run(blkid.probe(device), { signal }));
  const nonZero = probe.kind === "empty" ? await firstNonZeroByte(device, await deviceSize(deps.run, device, signal)) : undefined;
  let plan = planDevice(probe, nonZero);

  if (mapping.active) {
    // An open mapping means an earlier attempt got this far; never format under it.
    if (mapping.device !== device) {
      throw new FailedPreconditionError(`${name} is open on ${mapping.device ?? "an unknown device"}, not on ${device}; close it first`);
    }
    if (plan.action !== "open") {
      throw new FailedPreconditionError(`${name} is open but ${device} no longer carries its LUKS2 header`);
    }
  }
  if (plan.action === "refuse") throw new FailedPreconditionError(`volume ${volumeId}: ${plan.reason}`);
  if (plan.action === "format") {
    const uuid = await deps.luks.format(device, request.integrity, signal);
    log.info({ device, keyId: uuid, integrity: request.integrity }, "formatted LUKS2");
    failpoint("stage:after-format");
    plan = { action: "open", uuid, label: "fresh" };
  }

  const verdict = await deps.luks.checkHeader(device, signal);
  if (verdict.integrity !== request.integrity) {
    throw new FailedPreconditionError(
      `volume ${volumeId} was created ${request.integrity ? "with" : "without"} integrity protection but its header says otherwise`,
    );
  }
  if (!mapping.active) {
    await deps.luks.open({ device, name, uuid: plan.uuid }, signal);
    log.info({ device, mapper: name, keyId: plan.uuid }, "opened");
    failpoint("stage:after-open");
  }

  if (request.access.kind === "block") {
    if (plan.label !== "in-use") await deps.luks.setLabel(device, "in-use", signal);
    return;
  }
  await mountStaged(deps, request, { device, name, label: plan.label });
}

async function mountStaged(
  deps: StageDeps,
  request: StageRequest,
  volume: { device: string; name: string; label: string | undefined },
): Promise<void> {
  const { signal, log, stagingPath } = request;
  const decrypted = mapperPath(request.volumeId);
  const mounted = await topMountAt(stagingPath);
  if (mounted) {
    if (mounted.device !== (await deviceNumber(decrypted))) {
      throw new FailedPreconditionError(`${stagingPath} is already a mount point of another device (${mounted.source})`);
    }
    await settleLabel(deps, request, volume, mounted.fsType);
    return;
  }

  const wanted = (request.access.kind === "mount" ? request.access.fsType : undefined) ?? request.contextFsType;
  await mkdir(stagingPath, { recursive: true });
  const mount = async (fsType: Filesystem): Promise<void> => {
    const flags = request.access.kind === "mount" ? request.access.mountFlags : [];
    const readOnly = request.access.mode === "SINGLE_NODE_READER_ONLY" ? ["ro"] : [];
    const options = [...implicitMountOptions(fsType), ...readOnly, ...flags];
    await deps.run(mountFilesystem({ device: decrypted, target: stagingPath, fsType, options }), { signal });
    log.info({ mapper: volume.name, stagingPath }, "mounted");
    failpoint("stage:after-mount");
  };

  // The common case, a volume in use staged again: mount the filesystem it is known to have.
  // mount writes nothing, so this cannot format anything; if it fails, the probe below says why.
  if (volume.label === "in-use" && wanted !== undefined) {
    try {
      await mount(wanted);
      return;
    } catch (err) {
      log.info({ err: err instanceof Error ? err.message : String(err) }, "mount of the expected filesystem failed; probing the volume");
    }
  }

  const probe = blkid.parseProbe(await deps.run(blkid.probe(decrypted), { signal }));
  const plan = planFilesystem(probe, volume.label, wanted);
  if (plan.action === "refuse") throw new FailedPreconditionError(`volume ${request.volumeId}: ${plan.reason}`);
  if (plan.action === "mkfs") {
    await deps.run(mkfs(plan.fsType, decrypted), { signal });
    log.info({ mapper: volume.name, fsType: plan.fsType }, "created filesystem");
    failpoint("stage:after-mkfs");
  }
  // Recorded before the volume is handed out: from here on it may hold data. A "grow" label
  // stays until the filesystem has been grown, after the mount.
  let label = volume.label;
  if (label === "fresh") {
    await deps.luks.setLabel(volume.device, "in-use", signal);
    label = "in-use";
  }
  failpoint("stage:after-label");
  await mount(plan.fsType);
  await settleLabel(deps, request, { device: volume.device, label }, plan.fsType);
}

/**
 * Leaves a mounted volume labelled "in-use". A copy restored onto a larger disk ("grow")
 * carries its source's smaller filesystem, which is grown first so that the user gets the size
 * they asked for; growing is idempotent, so a crash before the label changes only repeats it.
 */
async function settleLabel(
  deps: StageDeps,
  request: StageRequest,
  volume: { device: string; label: string | undefined },
  fsType: string,
): Promise<void> {
  if (volume.label === "in-use") return;
  if (volume.label === "grow" && isFilesystem(fsType)) {
    await deps.run(growFilesystem(fsType, mapperPath(request.volumeId), request.stagingPath), { signal: request.signal });
    request.log.info({ stagingPath: request.stagingPath }, "grew the filesystem of a copy restored to a larger size");
  }
  await deps.luks.setLabel(volume.device, "in-use", request.signal);
}

async function deviceSize(run: Runner, device: string, signal: AbortSignal): Promise<number> {
  return blockdev.parseSize((await run(blockdev.sizeInBytes(device), { signal })).stdout);
}

/**
 * NodeUnstageVolume's effects, each skipped when already done: unmount the staging path (only
 * mounts of this volume's device), close the mapping, release the disk.
 */
export async function unstageVolume(
  deps: StageDeps,
  request: { volumeId: string; stagingPath: string; signal: AbortSignal; deadline?: number | undefined; log: Logger },
): Promise<void> {
  const { volumeId, stagingPath, signal, log } = request;
  const name = mapperName(volumeId);
  const mapping = await mappingStatus(name);
  if (mapping.active) {
    const mounted = await topMountAt(stagingPath);
    if (mounted && mounted.device === (await deviceNumber(mapperPath(volumeId)))) {
      await unmountAll(deps.run, stagingPath, signal);
      log.info({ stagingPath }, "unmounted");
    }
    await deps.luks.close(name, signal);
    log.info({ mapper: name }, "closed");
  }
  failpoint("unstage:after-close");
  await deps.disks.detach({ volumeId, stagingPath, signal, deadline: request.deadline });
}
