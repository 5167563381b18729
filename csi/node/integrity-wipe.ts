import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import { failpoint } from "../failpoints.js";
import { type LuksDevices, mapperPath } from "../luks/luks-device.js";
import { wipingLabel } from "../luks/policy.js";
import * as blockdev from "../tools/blockdev.js";
import { writeZeros } from "../tools/dd.js";

/** Bytes written between two progress records: the most a crash makes a retry write again. */
export const WIPE_CHUNK_BYTES = 32 * 1024 * 1024;

export interface WipeRequest {
  readonly volumeId: string;
  /** The raw disk, whose LUKS2 label records the progress. */
  readonly device: string;
  readonly mapperName: string;
  readonly uuid: string;
  /** Bytes already initialised, from the label ("wiping:N"). */
  readonly fromBytes: number;
  /** Whether the mapping is already open (an earlier attempt was cut off during the wipe). */
  readonly mappingOpen: boolean;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * Initialises a new integrity volume's tags: every sector of the decrypted device is written
 * once (with zeros) through dm-integrity, which computes its tag, so that no read ever meets
 * a sector whose tag was never written. cryptsetup does this inside luksFormat, where a kill
 * or a deadline loses all of it and the retry would open a volume with uninitialised tags;
 * here each chunk is flushed and then recorded in the header label ("wiping:N"), so a retry
 * continues from N. The mapping is opened without dm-integrity's journal for speed (the
 * recorded progress makes it safe: nothing before N is ever rewritten), and is closed before
 * the label says "fresh", so that no volume in use ever runs without its journal.
 */
export async function wipeIntegrity(deps: { run: Runner; luks: LuksDevices }, request: WipeRequest): Promise<void> {
  const { device, signal, log } = request;
  if (!request.mappingOpen) {
    await deps.luks.open({ device, name: request.mapperName, uuid: request.uuid, integrityNoJournal: true }, signal);
  }
  const decrypted = mapperPath(request.volumeId);
  const size = blockdev.parseSize((await deps.run(blockdev.sizeInBytes(decrypted), { signal })).stdout);
  if (request.fromBytes > size) {
    throw new FailedPreconditionError(`volume ${request.volumeId}: its label says ${request.fromBytes} bytes were wiped, but the device has only ${size}`);
  }
  if (request.fromBytes > 0) log.info({ wipedBytes: request.fromBytes, totalBytes: size }, "resuming the integrity wipe");
  for (let offset = request.fromBytes; offset < size; ) {
    const length = Math.min(WIPE_CHUNK_BYTES, size - offset);
    await deps.run(writeZeros(decrypted, offset, length), { signal });
    offset += length;
    await deps.luks.setLabel(device, wipingLabel(offset), signal);
    if (offset < size) failpoint("stage:mid-wipe", request.volumeId);
  }
  await deps.luks.close(request.mapperName, signal);
  await deps.luks.setLabel(device, "fresh", signal);
  log.info({ totalBytes: size }, "initialised the integrity tags");
}
