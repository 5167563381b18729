import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { isKubeStatus, type KubeClient } from "../../lib/kube/client.js";
import { FailedPreconditionError, UnavailableError } from "../../lib/errors.js";
import {
  LINEAGE_GROUP,
  LINEAGE_KIND,
  LINEAGE_PATH,
  LINEAGE_VERSION,
  parseCloakKeySpec,
  type CloakKeyObject,
  type CloakKeySpec,
  type LineageMember,
} from "../../lib/key-lineage.js";
import type { Logger } from "../../lib/log.js";

/**
 * Where a controller records which volumes and snapshots carry which key (lib/key-lineage.ts).
 * Both calls are idempotent, so a CreateVolume or DeleteVolume retried after a crash repeats
 * them harmlessly. Calls: `bind` before the member's disk exists, `release` after it is gone.
 */
export interface KeyLineage {
  /** "kubernetes" or "none": for logs. */
  readonly kind: string;
  /**
   * Records that `member` carries key `keyId`, creating the key's record for its first member.
   * FailedPrecondition for a key that is already revoked (the source of a clone was deleted
   * meanwhile): nothing may carry it again.
   */
  bind(o: { keyId: string; driver: string; node?: string | undefined; member: LineageMember; signal?: AbortSignal | undefined }): Promise<void>;
  /**
   * Removes `member` from its key's record; removing the last one revokes the key in the same
   * write. `keyId` undefined: the record is found by the member's label (a controller that did
   * not keep the key id, such as a wrapper that sees only the volume id at DeleteVolume).
   */
  release(o: { keyId?: string | undefined; driver: string; member: LineageMember; signal?: AbortSignal | undefined }): Promise<{ revoked: boolean }>;
  /**
   * The key id whose record lists `member`, or undefined when none does (or nothing is
   * recorded): for a controller that keeps no state of its own, such as a wrapper copying a
   * volume it knows only by the inner driver's id.
   */
  find(o: { driver: string; member: LineageMember; signal?: AbortSignal | undefined }): Promise<string | undefined>;
}

/**
 * Releases a member whose disk is gone, for a controller that recorded its key id; a member
 * made before key binding (no key id) has no record to release.
 */
export async function releaseMember(
  lineage: KeyLineage,
  o: { keyId: string | undefined; driver: string; member: LineageMember; signal?: AbortSignal | undefined },
): Promise<void> {
  if (o.keyId !== undefined) await lineage.release({ ...o, keyId: o.keyId });
}

/** For a plugin without the Kubernetes API (development, csi-sanity): records nothing. */
export const NO_LINEAGE: KeyLineage = {
  kind: "none",
  bind: () => Promise.resolve(),
  release: () => Promise.resolve({ revoked: false }),
  find: () => Promise.resolve(undefined),
};

/**
 * The label that lets a member's record be found by the member alone (`?labelSelector=`).
 * Hashed, because label names are short and volume ids of other drivers may be long.
 */
export function memberLabel(driver: string, member: LineageMember): string {
  const hash = createHash("sha256").update(`${driver}\n${member.kind}\n${member.id}`).digest("hex").slice(0, 40);
  return `${member.kind}.${LINEAGE_GROUP}/${hash}`;
}

/** Writes before giving up on conflicts (another controller updating the same key meanwhile). */
const MAX_ATTEMPTS = 20;

export function kubernetesLineage(o: { api: KubeClient; logger: Logger }): KeyLineage {
  const { api, logger } = o;
  const path = (keyId: string): string => `${LINEAGE_PATH}/${encodeURIComponent(keyId)}`;

  const read = async (keyId: string, signal: AbortSignal | undefined): Promise<CloakKeyObject | undefined> => {
    try {
      const raw = await api.json<CloakKeyObject>("GET", path(keyId), { signal });
      return { ...raw, spec: parseCloakKeySpec(raw.spec) };
    } catch (err) {
      if (isKubeStatus(err, 404)) return undefined;
      throw unavailable(err, `cannot read the record of key ${keyId}`);
    }
  };

  /** Compare-and-swap on resourceVersion: false when someone else wrote first. */
  const replace = async (current: CloakKeyObject, spec: CloakKeySpec, labels: Record<string, string>, signal: AbortSignal | undefined): Promise<boolean> => {
    try {
      await api.json("PUT", path(current.metadata.name), {
        body: { apiVersion: current.apiVersion, kind: current.kind, metadata: { ...current.metadata, labels }, spec },
        signal,
      });
      return true;
    } catch (err) {
      if (isKubeStatus(err, 409)) return false;
      if (isKubeStatus(err, 422)) throw new FailedPreconditionError(`the API server refused the record of key ${current.metadata.name}: ${(err as Error).message}`);
      throw unavailable(err, `cannot update the record of key ${current.metadata.name}`);
    }
  };

  const retry = async (what: string, attempt: number, signal: AbortSignal | undefined): Promise<void> => {
    if (attempt >= MAX_ATTEMPTS) throw new UnavailableError(`${what}: still conflicting after ${MAX_ATTEMPTS} attempts; retry`);
    await sleep(Math.round(Math.random() * 20 * attempt), undefined, signal ? { signal } : {});
  };

  return {
    kind: "kubernetes",
    async bind({ keyId, driver, node, member, signal }) {
      const label = memberLabel(driver, member);
      for (let attempt = 1; ; attempt++) {
        const current = await read(keyId, signal);
        if (!current) {
          const spec: CloakKeySpec = {
            driver,
            ...(node ? { node } : {}),
            volumes: member.kind === "volume" ? [member.id] : [],
            snapshots: member.kind === "snapshot" ? [member.id] : [],
            revoked: false,
          };
          try {
            await api.json("POST", LINEAGE_PATH, {
              body: { apiVersion: `${LINEAGE_GROUP}/${LINEAGE_VERSION}`, kind: LINEAGE_KIND, metadata: { name: keyId, labels: { [label]: "" } }, spec },
              signal,
            });
            logger.info({ keyId, driver, node, member }, "key record created");
            return;
          } catch (err) {
            if (!isKubeStatus(err, 409)) throw unavailable(err, `cannot create the record of key ${keyId}`);
            await retry(`recording key ${keyId}`, attempt, signal);
            continue;
          }
        }
        const spec = current.spec;
        if (spec.revoked) {
          throw new FailedPreconditionError(
            `key ${keyId} was revoked at ${spec.revokedAt ?? "an earlier time"} (its last volume and snapshot were deleted): no new volume may carry it`,
          );
        }
        if (spec.driver !== driver) throw new FailedPreconditionError(`key ${keyId} belongs to driver ${spec.driver}, not ${driver}`);
        if ((spec.node ?? undefined) !== (node ?? undefined)) {
          throw new FailedPreconditionError(`key ${keyId} is recorded for node ${spec.node ?? "(none)"}, not ${node ?? "(none)"}`);
        }
        const list = member.kind === "volume" ? spec.volumes : spec.snapshots;
        const labels = current.metadata.labels ?? {};
        if (list.includes(member.id) && label in labels) return;
        const next: CloakKeySpec =
          member.kind === "volume" ? { ...spec, volumes: [...new Set([...spec.volumes, member.id])] } : { ...spec, snapshots: [...new Set([...spec.snapshots, member.id])] };
        if (await replace(current, next, { ...labels, [label]: "" }, signal)) {
          logger.info({ keyId, member }, "key record: member added");
          return;
        }
        await retry(`recording key ${keyId}`, attempt, signal);
      }
    },

    async release({ keyId, driver, member, signal }) {
      const label = memberLabel(driver, member);
      for (let attempt = 1; ; attempt++) {
        const id = keyId ?? (await findByLabel(label, signal));
        if (id === undefined) return { revoked: false };
        const current = await read(id, signal);
        if (!current) return { revoked: false };
        const spec = current.spec;
        const volumes = member.kind === "volume" ? spec.volumes.filter((v) => v !== member.id) : spec.volumes;
        const snapshots = member.kind === "snapshot" ? spec.snapshots.filter((s) => s !== member.id) : spec.snapshots;
        const labels = { ...current.metadata.labels };
        const listed = volumes.length !== spec.volumes.length || snapshots.length !== spec.snapshots.length || label in labels;
        if (!listed) return { revoked: spec.revoked };
        delete labels[label];
        const revoke = volumes.length === 0 && snapshots.length === 0;
        const next: CloakKeySpec = revoke
          ? { driver: spec.driver, ...(spec.node ? { node: spec.node } : {}), volumes: [], snapshots: [], revoked: true, revokedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z") }
          : { ...spec, volumes, snapshots };
        if (await replace(current, next, labels, signal)) {
          logger.info({ keyId: id, member, revoked: revoke }, revoke ? "key revoked: its last volume or snapshot is gone" : "key record: member removed");
          return { revoked: revoke };
        }
        await retry(`releasing key ${id}`, attempt, signal);
      }
    },

    find: ({ driver, member, signal }) => findByLabel(memberLabel(driver, member), signal),
  };

  async function findByLabel(label: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    try {
      const list = await api.json<{ items?: { metadata?: { name?: string } }[] }>("GET", LINEAGE_PATH, { query: { labelSelector: label }, signal });
      const names = (list.items ?? []).map((i) => i.metadata?.name ?? "").filter((n) => n !== "");
      if (names.length > 1) throw new FailedPreconditionError(`${names.length} key records claim the same member (${names.join(", ")})`);
      return names[0];
    } catch (err) {
      if (err instanceof FailedPreconditionError) throw err;
      throw unavailable(err, "cannot look up a member's key record");
    }
  }
}

function unavailable(err: unknown, what: string): UnavailableError {
  return new UnavailableError(`${what}: ${(err as Error).message}`, { cause: err });
}
