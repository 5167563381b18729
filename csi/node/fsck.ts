import type { Runner } from "../../lib/exec.js";
import type { Logger } from "../../lib/log.js";
import { FailedPreconditionError } from "../../lib/errors.js";
import * as fsck from "../tools/fsck.js";
import type { Filesystem } from "../tools/mkfs.js";

/**
 * Checks a volume's filesystem before it is mounted. A filesystem that needs a person's repair
 * is FailedPrecondition (retrying will not help, and mounting it could make it worse); what
 * the checker repaired by itself is logged.
 */
export async function checkFilesystem(
  run: Runner,
  request: { fsType: Filesystem; device: string; volumeId: string; signal: AbortSignal; log: Logger },
): Promise<void> {
  const result = await run(fsck.check(request.fsType, request.device), { signal: request.signal });
  const verdict = fsck.interpret(request.fsType, result);
  switch (verdict.verdict) {
    case "clean":
      return;
    case "repaired":
      request.log.warn({ fsType: request.fsType, detail: verdict.detail }, "the filesystem check repaired the volume's filesystem");
      return;
    case "log-to-replay":
      request.log.info({ fsType: request.fsType }, "the filesystem's log is replayed by the mount; not checked further");
      return;
    case "needs-repair":
      throw new FailedPreconditionError(
        `volume ${request.volumeId}: its ${request.fsType} filesystem has errors the check cannot repair on its own and needs a manual repair ` +
          `(${request.fsType === "ext4" ? "e2fsck" : "xfs_repair"}): ${verdict.detail}`,
      );
  }
}
