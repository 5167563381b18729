import type { KeyObject } from "node:crypto";
import { status as GrpcStatus, type ServerUnaryCall } from "@grpc/grpc-js";
import { deriveDataKey } from "../lib/data-key.js";
import { PermissionDeniedError, toGrpcStatus, UnauthenticatedError } from "../lib/errors.js";
import type { AsyncHandlers } from "../lib/grpc-handler.js";
import type { Logger } from "../lib/log.js";
import type { GetDataKeyRequest__Output } from "../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import type { KeyServiceHandlers } from "../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { AllowList } from "./authz.js";
import { identityNames } from "./identity.js";
import { peerOf } from "./peer.js";

/** How callers are identified: by client certificate, or (development only) not at all. */
export type AuthMode = "mtls" | "insecure-dev";

export interface KeyServiceCoreOptions {
  /** A function when the secret may be absent (KMS mode): it throws UnavailableError then. */
  readonly masterSecret: Buffer | KeyObject | (() => KeyObject);
  readonly salt: Buffer;
  readonly authMode: AuthMode;
  /** The allow-list in force; a function because the allow-list file may be reloaded. */
  readonly allowList: () => AllowList;
  /** Receives one line per request: the audit trail. */
  readonly audit: Logger;
  /** Told the result and duration of every request. */
  readonly observe?: (result: string, seconds: number) => void;
}

/** What the audit line names as the caller. */
interface Caller {
  readonly client: string;
  readonly authorised: boolean;
  readonly reason?: string;
}

/**
 * GetDataKey: who is calling → may they → derive → answer. Authorisation comes before input
 * checks, so a caller that may not ask learns nothing, not even which ids are well-formed.
 * Every request leaves exactly one audit line (caller, key id, result, duration; never the key)
 * whatever happens.
 */
export function keyServiceHandlers(options: KeyServiceCoreOptions): AsyncHandlers<KeyServiceHandlers> {
  const { masterSecret, salt, audit } = options;
  return {
    GetDataKey(request: GetDataKeyRequest__Output, context): Promise<GetDataKeyResponse> {
      const started = performance.now();
      const caller = identifyCaller(context.call, options);
      let result = "OK";
      let failure: string | undefined;
      try {
        if (!caller.authorised) {
          throw caller.reason === "no client certificate"
            ? new UnauthenticatedError("no client certificate")
            : new PermissionDeniedError(`client ${caller.client} is not allowed to get data keys`);
        }
        const key = deriveDataKey(typeof masterSecret === "function" ? masterSecret() : masterSecret, salt, request.data_key_id, request.length);
        // grpc-js serialises the response synchronously inside the handler's callback, which
        // runs in a microtask after this promise settles; by the next macrotask the key has
        // been copied into the outgoing frame and this copy can be wiped.
        setImmediate(() => key.fill(0));
        return Promise.resolve({ data_key: key });
      } catch (err) {
        const status = toGrpcStatus(err);
        result = GrpcStatus[status.code];
        failure = status.details;
        return Promise.reject(err);
      } finally {
        const seconds = (performance.now() - started) / 1000;
        audit.info(
          {
            client: caller.client,
            peer: context.call.getPeer(),
            data_key_id: truncate(request.data_key_id),
            length: request.length,
            result,
            ms: Math.round(seconds * 1e6) / 1e3,
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
