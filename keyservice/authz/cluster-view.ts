import type { ReflectorSink } from "../../lib/kube-api/reflector.js";
import type { AttachmentView, KeyView, PodView, PvView } from "./projections.js";

/**
 * "Who holds which volume": the questions an authorisation decision asks of the cluster
 * (./decide.ts). The key service answers them from informer caches (ClusterView below); tests
 * answer them from plain objects.
 */
export interface VolumeHolders {
  /** The key's lineage record, or undefined when no CloakKey names it. */
  key(keyId: string): KeyView | undefined;
  /** PVs of cloak's drivers whose volumeAttributes carry the key id. */
  volumesWithKey(keyId: string): Iterable<PvView>;
  /** The PV a claim (`namespace/name`) is bound to. */
  claimVolume(claim: string): string | undefined;
  /** Scheduled, running pods whose volumes use a claim. */
  podsUsingClaim(claim: string): Iterable<PodView>;
  /** Nodes with a VolumeAttachment of the PV. */
  attachedNodes(pv: string): Iterable<string>;
  pod(namespace: string, name: string): PodView | undefined;
}

/**
 * The caches behind VolumeHolders, with the indexes the questions need: PVs by key id, pods by
 * claim, attachments by PV. Each resource's reflector writes through its sink. Every change
 * bumps `version` and wakes whoever waits in `changed()` (a decision that may only be waiting
 * for an informer to catch up).
 */
export class ClusterView implements VolumeHolders {
  private readonly pvs = new Map<string, PvView>();
  private readonly pvsByKey = new Map<string, Set<string>>();
  private readonly claims = new Map<string, string>();
  private readonly pods = new Map<string, PodView>();
  private readonly podsByClaim = new Map<string, Set<string>>();
  private readonly attachments = new Map<string, AttachmentView>();
  private readonly attachmentsByPv = new Map<string, Set<string>>();
  private readonly keys = new Map<string, KeyView>();
  private waiters: (() => void)[] = [];
  version = 0;

  key(keyId: string): KeyView | undefined {
    return this.keys.get(keyId);
  }

  *volumesWithKey(keyId: string): Iterable<PvView> {
    for (const name of this.pvsByKey.get(keyId) ?? []) {
      const pv = this.pvs.get(name);
      if (pv) yield pv;
    }
  }

  claimVolume(claim: string): string | undefined {
    return this.claims.get(claim);
  }

  *podsUsingClaim(claim: string): Iterable<PodView> {
    for (const key of this.podsByClaim.get(claim) ?? []) {
      const pod = this.pods.get(key);
      if (pod) yield pod;
    }
  }

  *attachedNodes(pv: string): Iterable<string> {
    for (const name of this.attachmentsByPv.get(pv) ?? []) {
      const va = this.attachments.get(name);
      if (va) yield va.node;
    }
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

  readonly pvSink: ReflectorSink<PvView> = this.sink(this.pvs, (pv, add) => index(this.pvsByKey, pv.keyId, pv.name, add));
  readonly claimSink: ReflectorSink<string> = this.sink(this.claims, () => undefined);
  readonly podSink: ReflectorSink<PodView> = this.sink(this.pods, (pod, add, key) => {
    for (const claim of pod.claims) index(this.podsByClaim, claim, key, add);
  });
  readonly attachmentSink: ReflectorSink<AttachmentView> = this.sink(this.attachments, (va, add, key) => index(this.attachmentsByPv, va.pv, key, add));
  readonly keySink: ReflectorSink<KeyView> = this.sink(this.keys, () => undefined);

  /** A sink over one map whose `indexer` adds (or removes) an item's index entries. */
  private sink<P>(map: Map<string, P>, indexer: (item: P, add: boolean, key: string) => void): ReflectorSink<P> {
    const remove = (key: string): void => {
      const old = map.get(key);
      if (old === undefined) return;
      indexer(old, false, key);
      map.delete(key);
    };
    return {
      replace: (items) => {
        for (const key of [...map.keys()]) if (!items.has(key)) remove(key);
        for (const [key, item] of items) {
          remove(key);
          map.set(key, item);
          indexer(item, true, key);
        }
        this.bump();
      },
      upsert: (key, item) => {
        remove(key);
        map.set(key, item);
        indexer(item, true, key);
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

function index(map: Map<string, Set<string>>, key: string | undefined, value: string, add: boolean): void {
  if (key === undefined) return;
  let set = map.get(key);
  if (add) {
    if (!set) map.set(key, (set = new Set()));
    set.add(value);
  } else if (set) {
    set.delete(value);
    if (set.size === 0) map.delete(key);
  }
}
