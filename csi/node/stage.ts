import { mkdir } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import type { AttachRequest, NodeDiskSource } from "../disk/disk-source.js";
import { failpoint, failpointLeaving } from "../failpoints.js";
import * as cryptsetup from "../luks/cryptsetup.js";
import type { HeaderParse, Luks2Header } from "../luks/header.js";
import { type LuksDevices, mapperName, mapperPath, mappingStatus } from "../luks/luks-device.js";
import { dataOffsetBytes, isNeverUsedLabel, isUnfinishedFormat, LUKS_FORMAT, wipedBytes, wipingLabel } from "../luks/policy.js";
import * as blkid from "../tools/blkid.js";
import * as blockdev from "../tools/blockdev.js";
import { checkFilesystem } from "./fsck.js";
import { growFilesystem, implicitMountOptions, isFilesystem, mkfs, type Filesystem } from "../tools/mkfs.js";
import { mountFilesystem } from "../tools/mount.js";
import type { Access } from "../validate.js";
import { firstNonZeroByte } from "./disk-content.js";
import { wipeIntegrity } from "./integrity-wipe.js";
import { deviceNumber, topMountAt, unmountAll } from "./mounts.js";
import { planDevice, planFilesystem, type DevicePlan } from "./stage-plan.js";

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
  /** The key id the controller bound the volume to (the LUKS UUID to format with); absent for older volumes. */
  readonly keyId?: string | undefined;
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
  failpoint("stage:after-attach", volumeId);

  const name = mapperName(volumeId);
  const mapping = await mappingStatus(name);
  // Both copies of a LUKS2 header read in process, valid and equal (header.ts), say all a warm
  // stage needs to know, without a command. Anything else — no header, a damaged or differing
  // copy — is probed by blkid as well, which also sees other signatures beside a header and
  // tells an empty disk from one that holds something (never formatted).
  const header = await deps.luks.readHeader(device, signal);
  let plan: DevicePlan =
    header.ok && header.problems.length === 0 && header.copies.length === 1 ? openPlan(header.header) : await probeDevice(deps.run, device, signal);
  // blkid reads one copy of a LUKS2 header; the label and UUID that count are those of the
  // copy cryptsetup uses, which after an interrupted relabel may be the other one.
  if (plan.action === "open" && header.ok) plan = openPlan(header.header);

  if (mapping.active) {
    // An open mapping means an earlier attempt got this far; never format under it.
    if (mapping.device !== device) {
      throw new FailedPreconditionError(`${name} is open on ${mapping.device ?? "an unknown device"}, not on ${device}; close it first`);
    }
    if (plan.action !== "open") {
      throw new FailedPreconditionError(`${name} is open but ${device} no longer carries its LUKS2 header`);
    }
  } else if (plan.action === "open" && isNeverUsedLabel(plan.label) && (await isUnfinishedFormatOn(deps, device, header, signal))) {
    log.warn({ device, keyId: plan.uuid }, "the disk holds a header whose format was cut off before its keyslot was written; formatting it again");
    plan = { action: "format", uuid: plan.uuid };
  }
  if (plan.action === "refuse") throw new FailedPreconditionError(`volume ${volumeId}: ${plan.reason}`);
  if (plan.uuid !== undefined && request.keyId !== undefined && plan.uuid !== request.keyId) {
    // Not this volume's disk, or a header someone replaced (a cut-off format redone keeps its
    // UUID, so it is checked too): its key is not this volume's to ask for.
    throw new FailedPreconditionError(`volume ${volumeId}: the disk's LUKS UUID ${plan.uuid} is not the key id ${request.keyId} the volume was created with`);
  }
  if (plan.action === "format") {
    // A redone format keeps the UUID it was cut off with; a new one takes the controller's key id.
    const uuid = await deps.luks.format(device, { integrity: request.integrity, uuid: plan.uuid ?? request.keyId }, signal);
    log.info({ device, keyId: uuid, integrity: request.integrity }, "formatted LUKS2");
    await failpointLeaving("stage:mid-format", volumeId, () => deps.run(cryptsetup.luksErase(device), { signal }));
    failpoint("stage:after-format", volumeId);
    plan = { action: "open", uuid, label: request.integrity ? wipingLabel(0) : "fresh", subsystem: LUKS_FORMAT.subsystem };
  }

  const verdict = await deps.luks.checkHeader(device, signal);
  if (verdict.integrity !== request.integrity) {
    throw new FailedPreconditionError(
      `volume ${volumeId} was created ${request.integrity ? "with" : "without"} integrity protection but its header says otherwise`,
    );
  }
  let open = mapping.active;
  let label = plan.label;
  const wiped = wipedBytes(label);
  if (wiped !== undefined) {
    if (!verdict.integrity) throw new FailedPreconditionError(`volume ${volumeId}: its label says an integrity wipe is under way, but it has no integrity`);
    await wipeIntegrity(deps, { volumeId, device, mapperName: name, uuid: plan.uuid, fromBytes: wiped, mappingOpen: open, signal, log });
    open = false;
    label = "fresh";
  }
  if (!open) {
    await deps.luks.open({ device, name, uuid: plan.uuid }, signal);
    log.info({ device, mapper: name, keyId: plan.uuid }, "opened");
    failpoint("stage:after-open", volumeId);
  }

  if (request.access.kind === "block") {
    if (label !== "in-use") await deps.luks.setLabel(device, "in-use", signal);
    return;
  }
  await mountStaged(deps, request, { device, name, label });
}

/**
 * Whether the header on `device` is a format cloak began and never finished (policy.ts,
 * isUnfinishedFormat) and its data area was never written: then it held nothing, ever. Every
 * valid copy of the header must say so, not only the one cryptsetup uses.
 */
async function isUnfinishedFormatOn(deps: StageDeps, device: string, header: HeaderParse, signal: AbortSignal): Promise<boolean> {
  if (!header.ok || !header.copies.every((copy) => isUnfinishedFormat(copy.metadata, copy))) return false;
  const offset = dataOffsetBytes(header.header.metadata);
  if (offset === undefined) return false;
  const size = await deviceSize(deps.run, device, signal);
  return offset < size && (await firstNonZeroByte(device, size - offset, offset)) === undefined;
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
  const readOnly = request.access.mode === "SINGLE_NODE_READER_ONLY";
  await mkdir(stagingPath, { recursive: true });
  const mount = async (fsType: Filesystem): Promise<void> => {
    const flags = request.access.kind === "mount" ? request.access.mountFlags : [];
    const options = [...implicitMountOptions(fsType), ...(readOnly ? ["ro"] : []), ...flags];
    await deps.run(mountFilesystem({ device: decrypted, target: stagingPath, fsType, options }), { signal });
    log.info({ mapper: volume.name, stagingPath }, "mounted");
    failpoint("stage:after-mount", request.volumeId);
  };

  const probe = blkid.parseProbe(await deps.run(blkid.probe(decrypted), { signal }));
  const plan = planFilesystem(probe, volume.label, wanted);
  if (plan.action === "refuse") throw new FailedPreconditionError(`volume ${request.volumeId}: ${plan.reason}`);
  if (plan.action === "mkfs") {
    await deps.run(mkfs(plan.fsType, decrypted), { signal });
    log.info({ mapper: volume.name, fsType: plan.fsType }, "created filesystem");
    failpoint("stage:after-mkfs", request.volumeId);
  } else if (volume.label !== "fresh" && !readOnly) {
    // A filesystem that was in use is checked before it is mounted, as Kubernetes'
    // SafeFormatAndMount does: what the checker repairs on its own is repaired, and one that
    // needs a person is refused rather than mounted and made worse. (Read-only stages are not
    // checked: a check may write, and a read-only mount cannot make anything worse.)
    await checkFilesystem(deps.run, { fsType: plan.fsType, device: decrypted, volumeId: request.volumeId, signal, log });
  }
  // Recorded before the volume is handed out: from here on it may hold data. A "grow" label
  // stays until the filesystem has been grown, after the mount.
  let label = volume.label;
  if (label === "fresh") {
    await deps.luks.setLabel(volume.device, "in-use", signal);
    label = "in-use";
  }
  failpoint("stage:after-label", request.volumeId);
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

/** What blkid (and, for a disk without a signature, its bytes) says may be done with `device`. */
async function probeDevice(run: Runner, device: string, signal: AbortSignal): Promise<DevicePlan> {
  const probe = blkid.parseProbe(await run(blkid.probe(device), { signal }));
  const nonZero = probe.kind === "empty" ? await firstNonZeroByte(device, await deviceSize(run, device, signal)) : undefined;
  return planDevice(probe, nonZero);
}

function openPlan(header: Luks2Header): DevicePlan {
  return { action: "open", uuid: header.uuid, label: header.label, subsystem: header.subsystem };
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
  failpoint("unstage:after-close", volumeId);
  await deps.disks.detach({ volumeId, stagingPath, signal, deadline: request.deadline });
}
