import { PermissionDeniedError, UnauthenticatedError } from "../../lib/errors.js";
import { LINEAGE_PATH } from "../../lib/key-lineage.js";
import { KubeClient } from "../../lib/kube/client.js";
import { Reflector } from "../../lib/kube/reflector.js";
import type { Logger } from "../../lib/log.js";
import { ClusterView } from "./cluster-view.js";
import type { AuthzConfig } from "./config.js";
import { authorizeKey, checkCaller, type Refusal } from "./decide.js";
import { projectAttachment, projectKey, projectPod, projectPv, projectPvc } from "./projections.js";
import { AuthzRefusal, type NodeCaller } from "./refusal.js";
import { apiTokenReviewer, TokenVerifier, type TokenReviewer } from "./tokens.js";

export { AuthzRefusal, type NodeCaller };

/**
 * Per-node, per-volume authorisation over the caches: `identify` turns a bearer token into the
 * node it proves, `authorize` decides whether that node may have a key. Both throw the CloakError
 * whose gRPC status the caller gets (Unauthenticated, PermissionDenied, Unavailable), carrying
 * what the audit line needs.
 */
export interface Authorizer {
  identify(bearer: string | undefined): Promise<NodeCaller>;
  /** Resolves with why the node may have it ("pod x uses claim y bound to z"). */
  authorize(caller: NodeCaller, keyId: string): Promise<string>;
  readonly view: ClusterView;
  stop(): Promise<void>;
}

export interface AuthorizerParts {
  readonly view: ClusterView;
  readonly verifier: TokenVerifier;
  readonly nodeServiceAccount: string;
  readonly graceMs: number;
  /** Decisions waiting for the caches at most at once; further refusals are final at once. */
  readonly maxWaiting?: number;
  readonly stop?: () => Promise<void>;
}

/** The authoriser over given parts (tests give them a view they fill themselves). */
export function createAuthorizer(parts: AuthorizerParts): Authorizer {
  const { view, verifier, nodeServiceAccount, graceMs } = parts;
  const maxWaiting = parts.maxWaiting ?? 256;
  let waiting = 0;

  /**
   * Decides now; a refusal that the caches catching up could turn is decided again as they
   * change, up to graceMs. Synchronous (no promise, no microtask) unless it has to wait.
   */
  const settle = <D extends { readonly allowed: true } | Refusal>(decide: () => D): D | Promise<D> => {
    const decision = decide();
    if (decision.allowed || !decision.settling || graceMs === 0 || waiting >= maxWaiting) return decision;
    return wait(decide, decision);
  };

  const wait = async <D extends { readonly allowed: true } | Refusal>(decide: () => D, first: D): Promise<D> => {
    let decision = first;
    waiting++;
    const deadline = performance.now() + graceMs;
    try {
      while (!decision.allowed && decision.settling) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([view.changed(), new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
        clearTimeout(timer);
        decision = decide();
      }
    } finally {
      waiting--;
    }
    return decision;
  };

  const refuse = (d: Refusal, caller: Partial<NodeCaller>): never => {
    throw new AuthzRefusal(d.code === "UNAUTHENTICATED" ? new UnauthenticatedError(d.reason) : new PermissionDeniedError(d.reason), caller);
  };

  return {
    view,
    async identify(bearer) {
      if (bearer === undefined) {
        throw new AuthzRefusal(new UnauthenticatedError("no token: the node plugin must send its projected service-account token (--keyservice-token)"), {});
      }
      const reviewed = verifier.verify(bearer);
      const review = reviewed instanceof Promise ? await reviewed : reviewed;
      if (!review.ok) throw new AuthzRefusal(new UnauthenticatedError(review.reason), {});
      const caller = review.caller;
      const pod = `${caller.serviceAccount.split("/")[0] ?? ""}/${caller.podName}`;
      const checked = settle(() => checkCaller(view, caller, nodeServiceAccount));
      const check = checked instanceof Promise ? await checked : checked;
      if (!check.allowed) return refuse(check, { pod, ...(caller.node ? { node: caller.node } : {}) });
      return { node: check.node, pod: check.pod };
    },
    async authorize(caller, keyId) {
      const decided = settle(() => authorizeKey(view, caller.node, keyId));
      const decision = decided instanceof Promise ? await decided : decided;
      if (!decision.allowed) return refuse(decision, caller);
      return decision.via;
    },
    stop: parts.stop ?? (() => Promise.resolve()),
  };
}

/**
 * The authoriser against a cluster: informers for PVs, claims, pods, VolumeAttachments and
 * CloakKeys (projected: ./projections.ts), TokenReview for tokens. Resolves once every cache has
 * listed, so the service never decides on a partial picture.
 */
export async function startKubernetesAuthorizer(o: { config: AuthzConfig; logger: Logger; review?: TokenReviewer }): Promise<Authorizer> {
  const { config, logger } = o;
  const client = await KubeClient.connect(config.kubeconfig, "cloak-keyservice");
  const view = new ClusterView();
  const drivers = new Set(config.drivers);
  const log = logger.child({ scope: "authz" });
  const reflectors = [
    new Reflector({ client, path: "/api/v1/persistentvolumes", project: (o) => projectPv(o, drivers), sink: view.pvSink, logger: log }),
    new Reflector({ client, path: "/api/v1/persistentvolumeclaims", project: projectPvc, sink: view.claimSink, logger: log }),
    // Scheduled pods only; a pod that finishes leaves the selection (the watch says DELETED).
    new Reflector({
      client,
      path: "/api/v1/pods",
      fieldSelector: "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
      project: (o) => projectPod(o, config.nodeServiceAccount),
      sink: view.podSink,
      logger: log,
    }),
    new Reflector({ client, path: "/apis/storage.k8s.io/v1/volumeattachments", project: (o) => projectAttachment(o, drivers), sink: view.attachmentSink, logger: log }),
    new Reflector({ client, path: LINEAGE_PATH, project: projectKey, sink: view.keySink, logger: log }),
  ];
  const stop = async (): Promise<void> => {
    await Promise.all(reflectors.map((r) => r.stop()));
    client.close();
  };
  const started = performance.now();
  for (const r of reflectors) r.start();
  try {
    await Promise.all(reflectors.map((r) => r.whenSynced()));
  } catch (err) {
    await stop();
    throw err;
  }
  log.info({ source: client.source, server: client.server, ms: Math.round(performance.now() - started), ...view.sizes() }, "authorisation caches synced");
  const verifier = new TokenVerifier({ review: o.review ?? apiTokenReviewer(client), audience: config.audience });
  return createAuthorizer({ view, verifier, nodeServiceAccount: config.nodeServiceAccount, graceMs: config.graceMs, stop });
}
