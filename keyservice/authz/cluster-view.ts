import type { ReflectorSink } from "../../lib/kube/reflector.js";
import type { AttachmentView, KeyView, PodView, PvView } from "./projections.js";

/**
 * "Who holds which volume": the questions an authorisation decision asks of the cluster
 * (./decide.ts). The key service answers them from informer caches (ClusterView below); tests
 * answer them from plain objects. Lists are returned as they are held: read them, never keep
 * or change them.
 */
export interface VolumeHolders {
  /** The key's lineage record, or undefined when no CloakKey names it. */
  key(keyId: string): KeyView | undefined;
  /** PVs of cloak's drivers whose volumeAttributes carry the key id. */
  volumesWithKey(keyId: string): readonly PvView[];
  /** The PV a claim (`namespace/name`) is bound to. */
  claimVolume(claim: string): string | undefined;
  /** Scheduled, running pods whose volumes use a claim. */
  podsUsingClaim(claim: string): readonly PodView[];
  /** VolumeAttachments of the PV. */
  attachmentsOf(pv: string): readonly AttachmentView[];
  pod(namespace: string, name: string): PodView | undefined;
}

const NONE: readonly never[] = [];

/**
 * The caches behind VolumeHolders, with the indexes the questions need: PVs by key id, pods by
 * claim, attachments by PV — arrays of the cached objects themselves, so that a question
 * allocates nothing (a Set per claim would cost more memory than the pod it points to). Each
 * resource's reflector writes through its sink. Every change bumps `version` and wakes whoever
 * waits in `changed()` (a decision that may only be waiting for an informer to catch up).
 */
export class ClusterView implements VolumeHolders {
  private readonly pvs = new Map<string, PvView>();
  private readonly pvsByKey = new Map<string, PvView[]>();
  private readonly claims = new Map<string, string>();
  private readonly pods = new Map<string, PodView>();
  private readonly podsByClaim = new Map<string, PodView[]>();
  private readonly attachments = new Map<string, AttachmentView>();
  private readonly attachmentsByPv = new Map<string, AttachmentView[]>();
  private readonly keys = new Map<string, KeyView>();
  private waiters: (() => void)[] = [];
  version = 0;

  key(keyId: string): KeyView | undefined {
    return this.keys.get(keyId);
  }

  volumesWithKey(keyId: string): readonly PvView[] {
    return this.pvsByKey.get(keyId) ?? NONE;
  }

  claimVolume(claim: string): string | undefined {
    return this.claims.get(claim);
  }

  podsUsingClaim(claim: string): readonly PodView[] {
    return this.podsByClaim.get(claim) ?? NONE;
  }

  attachmentsOf(pv: string): readonly AttachmentView[] {
    return this.attachmentsByPv.get(pv) ?? NONE;
  }

  pod(namespace: string, name: string): PodView | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }

  /** Resolves at the next change of any cache. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Object counts, for the startup log line and metrics. */
  sizes(): Record<string, number> {
    return { pvs: this.pvs.size, claims: this.claims.size, pods: this.pods.size, attachments: this.attachments.size, keys: this.keys.size };
  }

  readonly pvSink: ReflectorSink<PvView> = this.sink(this.pvs, (pv, add) => index(this.pvsByKey, pv.keyId, pv, add));
  readonly claimSink: ReflectorSink<string> = this.sink(this.claims, () => undefined);
  readonly podSink: ReflectorSink<PodView> = this.sink(this.pods, (pod, add) => {
    for (const claim of pod.claims) index(this.podsByClaim, claim, pod, add);
  });
  readonly attachmentSink: ReflectorSink<AttachmentView> = this.sink(this.attachments, (va, add) => index(this.attachmentsByPv, va.pv, va, add));
  readonly keySink: ReflectorSink<KeyView> = this.sink(this.keys, () => undefined);

  /** A sink over one map whose `indexer` adds (or removes) an item's index entries. */
  private sink<P>(map: Map<string, P>, indexer: (item: P, add: boolean) => void): ReflectorSink<P> {
    const remove = (key: string): void => {
      const old = map.get(key);
      if (old === undefined) return;
      indexer(old, false);
      map.delete(key);
    };
    const put = (key: string, item: P): void => {
      remove(key);
      map.set(key, item);
      indexer(item, true);
    };
    return {
      replace: (items) => {
        for (const key of [...map.keys()]) if (!items.has(key)) remove(key);
        for (const [key, item] of items) put(key, item);
        this.bump();
      },
      upsert: (key, item) => {
        put(key, item);
        this.bump();
      },
      remove: (key) => {
        remove(key);
        this.bump();
      },
    };
  }

  private bump(): void {
    this.version++;
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Adds `item` to (or removes it, by identity, from) the list indexed under `key`. */
function index<T>(map: Map<string, T[]>, key: string | undefined, item: T, add: boolean): void {
  if (key === undefined) return;
  const list = map.get(key);
  if (add) {
    if (list) list.push(item);
    else map.set(key, [item]);
    return;
  }
  if (!list) return;
  const at = list.indexOf(item);
  if (at >= 0) list.splice(at, 1);
  if (list.length === 0) map.delete(key);
}
