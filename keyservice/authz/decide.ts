import type { VolumeHolders } from "./cluster-view.js";
import { hasMember, type PvView } from "./projections.js";

/**
 * The authorisation decisions, pure: given what the caches say (VolumeHolders), may this caller
 * have this key? No I/O, no clock; ./authorizer.ts runs them and waits where waiting can help.
 *
 * A decision that may only be stale — the pod, the claim or the key's record created a moment
 * ago and not yet seen by an informer — is marked `settling`: the caller may look again once
 * the caches change. Refusals that no cache update can turn (another service account, a revoked
 * key, a pod on another node) are final at once.
 */
export interface Refusal {
  readonly allowed: false;
  readonly code: "UNAUTHENTICATED" | "PERMISSION_DENIED";
  readonly reason: string;
  /** True when the caches catching up could turn it. */
  readonly settling: boolean;
}

export type Decision = { readonly allowed: true; readonly via: string } | Refusal;

/** Who the token says is calling (from the TokenReview). */
export interface TokenCaller {
  /** `namespace/name` of its service account. */
  readonly serviceAccount: string;
  readonly podName: string;
  readonly podUid: string;
  /** The node the API server put in the token; absent from tokens of older clusters. */
  readonly node: string | undefined;
}

export type CallerCheck = { readonly allowed: true; readonly node: string; readonly pod: string } | Refusal;

/**
 * The token's pod must be the node plugin's, still exist with the uid the token was bound to,
 * and run on the node the token names: a token outlives neither its pod nor a move.
 */
export function checkCaller(view: VolumeHolders, caller: TokenCaller, nodeServiceAccount: string): CallerCheck {
  const deny = (code: Refusal["code"], reason: string, settling: boolean): Refusal => ({ allowed: false, code, reason, settling });
  if (caller.serviceAccount !== nodeServiceAccount) {
    return deny("PERMISSION_DENIED", `service account ${caller.serviceAccount} is not the node plugin's (${nodeServiceAccount})`, false);
  }
  const [namespace = ""] = caller.serviceAccount.split("/");
  const podKey = `${namespace}/${caller.podName}`;
  const pod = view.pod(namespace, caller.podName);
  if (!pod) return deny("UNAUTHENTICATED", `the token's pod ${podKey} does not exist (any more)`, true);
  if (pod.uid !== caller.podUid) return deny("UNAUTHENTICATED", `the token's pod ${podKey} (uid ${caller.podUid}) was replaced by another (uid ${pod.uid})`, true);
  if (caller.node !== undefined && pod.node !== caller.node) {
    return deny("UNAUTHENTICATED", `the token names node ${caller.node} but its pod ${podKey} runs on ${pod.node}`, false);
  }
  if (pod.finished) return deny("UNAUTHENTICATED", `the token's pod ${podKey} has finished`, false);
  return { allowed: true, node: pod.node, pod: podKey };
}

/**
 * Node `node` may have key `keyId` only while a volume carrying it is meant to be there: the
 * key's lineage record exists, is not revoked, and lists a PV of its driver whose
 * volumeAttributes name the key (and no other PV claims the same volume handle); and that PV is bound to a claim a pod on the node uses (the
 * graph the Node authorizer walks for Secrets), or is attached to the node (attach-required
 * drivers), or — for a node-local disk source — lives on the node by its affinity.
 */
export function authorizeKey(view: VolumeHolders, node: string, keyId: string): Decision {
  const deny = (reason: string, settling: boolean): Decision => ({ allowed: false, code: "PERMISSION_DENIED", reason, settling });
  const key = view.key(keyId);
  if (!key) return deny(`key id ${keyId} is bound to no volume (no CloakKey record)`, true);
  if (key.revoked) return deny(`key ${keyId} was revoked at ${key.revokedAt ?? "an earlier time"}: its last volume and snapshot were deleted`, false);
  const carriers: string[] = [];
  let unlisted = 0;
  let ambiguous = 0;
  const pvs = view.volumesWithKey(keyId);
  const shared = sharedHandles(pvs);
  for (const pv of pvs) {
    if (pv.driver !== key.driver || !hasMember(key.volumes, pv.handle)) {
      unlisted++;
      continue;
    }
    // Two PVs with one handle: one of them was made by hand to borrow the other's key. Neither counts.
    if (shared?.has(pv.handle)) {
      ambiguous++;
      continue;
    }
    carriers.push(pv.name);
    if (pv.claim !== undefined && view.claimVolume(pv.claim) === pv.name) {
      for (const pod of view.podsUsingClaim(pv.claim)) {
        if (pod.node === node && !pod.finished) return { allowed: true, via: `pod ${pod.namespace}/${pod.name} uses claim ${pv.claim} bound to ${pv.name}` };
      }
    }
    for (const va of view.attachmentsOf(pv.name)) {
      if (va.node === node) return { allowed: true, via: `${pv.name} is attached to ${node}` };
    }
    if (key.node === node && pv.nodes.includes(node)) return { allowed: true, via: `${pv.name} is a local volume of ${node}` };
  }
  if (carriers.length === 0) {
    const more =
      (unlisted > 0 ? ` (${unlisted} PV(s) name it but its record does not list them)` : "") +
      (ambiguous > 0 ? ` (${ambiguous} PVs share a volume handle: refused as ambiguous)` : "");
    return deny(`no PersistentVolume of driver ${key.driver} carries key ${keyId}${more}`, true);
  }
  return deny(`node ${node} holds none of the volumes with key ${keyId} (${carriers.slice(0, 5).join(", ")}${carriers.length > 5 ? ", …" : ""})`, true);
}

/** Handles that more than one of `pvs` carries; undefined (nothing to allocate) for one PV. */
function sharedHandles(pvs: readonly PvView[]): Set<string> | undefined {
  if (pvs.length < 2) return undefined;
  const seen = new Set<string>();
  let shared: Set<string> | undefined;
  for (const pv of pvs) {
    if (seen.has(pv.handle)) (shared ??= new Set()).add(pv.handle);
    seen.add(pv.handle);
  }
  return shared;
}
