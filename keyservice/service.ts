import type { KeyObject } from "node:crypto";
import { status as GrpcStatus, type ServerUnaryCall } from "@grpc/grpc-js";
import { checkDataKeyRequest, deriveDataKey } from "../lib/data-key.js";
import { PermissionDeniedError, toGrpcStatus, UnauthenticatedError } from "../lib/errors.js";
import type { AsyncHandlers } from "../lib/grpc-handler.js";
import type { Logger } from "../lib/log.js";
import type { GetDataKeyRequest__Output } from "../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import type { KeyServiceHandlers } from "../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { AllowList } from "./authz.js";
import { AuthzRefusal, type Authorizer } from "./authz/authorizer.js";
import { bearerToken } from "./authz/tokens.js";
import { identityNames } from "./identity.js";
import { peerOf } from "./peer.js";

/** How callers are identified: by client certificate, or (development only) not at all. */
export type AuthMode = "mtls" | "insecure-dev";

export interface KeyServiceCoreOptions {
  readonly masterSecret: Buffer | KeyObject;
  readonly salt: Buffer;
  readonly authMode: AuthMode;
  /** The allow-list in force; a function because the allow-list file may be reloaded. */
  readonly allowList: () => AllowList;
  /** Receives one line per request: the audit trail. */
  readonly audit: Logger;
  /** Told the result and duration of every request. */
  readonly observe?: (result: string, seconds: number) => void;
  /**
   * Per-node, per-volume authorisation (keyservice/authz/): the request's token must prove a
   * node plugin pod, and the key must belong to a volume meant to be on its node. Without it the
   * certificate allow-list alone decides.
   */
  readonly authorizer?: Authorizer | undefined;
}

/** What the audit line names as the caller. */
interface Caller {
  readonly client: string;
  readonly authorised: boolean;
  readonly reason?: string;
}

/**
 * GetDataKey: who is calling → may they → derive → answer. The certificate and the token are
 * checked before the request is looked at, so a caller that may not ask learns nothing, not even
 * which ids are well-formed; the key id's authorisation comes after the input check. Every
 * request leaves exactly one audit line (caller, node, pod, key id, result, duration, and why;
 * never the key) whatever happens.
 */
export function keyServiceHandlers(options: KeyServiceCoreOptions): AsyncHandlers<KeyServiceHandlers> {
  const { masterSecret, salt, audit, authorizer } = options;
  return {
    async GetDataKey(request: GetDataKeyRequest__Output, context): Promise<GetDataKeyResponse> {
      const started = performance.now();
      const caller = identifyCaller(context.call, options);
      let result = "OK";
      let failure: string | undefined;
      let who: { node?: string | undefined; pod?: string | undefined } = {};
      let via: string | undefined;
      try {
        if (!caller.authorised) {
          throw caller.reason === "no client certificate"
            ? new UnauthenticatedError("no client certificate")
            : new PermissionDeniedError(`client ${caller.client} is not allowed to get data keys`);
        }
        if (authorizer) {
          who = await authorizer.identify(bearerToken(context.call.metadata.get("authorization")));
          checkDataKeyRequest(request.data_key_id, request.length);
          via = await authorizer.authorize({ node: who.node ?? "", pod: who.pod ?? "" }, request.data_key_id);
        }
        const key = deriveDataKey(masterSecret, salt, request.data_key_id, request.length);
        // grpc-js serialises the response synchronously inside the handler's callback, which
        // runs in a microtask after this promise settles; by the next macrotask the key has
        // been copied into the outgoing frame and this copy can be wiped.
        setImmediate(() => key.fill(0));
        return { data_key: key };
      } catch (err) {
        const refusal = err instanceof AuthzRefusal ? err : undefined;
        if (refusal) who = refusal.caller;
        const status = toGrpcStatus(refusal?.error ?? err);
        result = GrpcStatus[status.code];
        failure = status.details;
        throw refusal?.error ?? err;
      } finally {
        const seconds = (performance.now() - started) / 1000;
        audit.info(
          {
            client: caller.client,
            peer: context.call.getPeer(),
            ...(who.node === undefined ? {} : { node: who.node }),
            ...(who.pod === undefined ? {} : { pod: who.pod }),
            data_key_id: truncate(request.data_key_id),
            length: request.length,
            result,
            ms: Math.round(seconds * 1e6) / 1e3,
            ...(via === undefined ? {} : { via }),
            ...(failure === undefined ? {} : { reason: failure }),
          },
          "GetDataKey",
        );
        options.observe?.(result, seconds);
      }
    },
  };
}

function identifyCaller(call: ServerUnaryCall<unknown, unknown>, options: KeyServiceCoreOptions): Caller {
  if (options.authMode === "insecure-dev") return { client: "insecure-dev", authorised: true };
  const peer = peerOf(call);
  // The handshake already refused clients without a certificate from our CA; this is the net
  // under that, should the server ever be started with weaker credentials.
  if (!peer) return { client: "-", authorised: false, reason: "no client certificate" };
  const match = options.allowList().match(peer.identity);
  if (match) return { client: match.name, authorised: true };
  const names = identityNames(peer.identity);
  return { client: names.length > 0 ? names.join(",") : `(no URI or DNS name; subject ${peer.subject})`, authorised: false };
}

/** Key ids are caller input: an absurd one must not become an absurd log line. */
function truncate(text: string): string {
  return text.length > 300 ? `${text.slice(0, 300)}…(${text.length} chars)` : text;
}
