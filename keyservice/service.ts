import type { KeyObject } from "node:crypto";
import { status as GrpcStatus, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { checkDataKeyRequest, deriveDataKey } from "../lib/data-key.js";
import { PermissionDeniedError, toGrpcStatus, UnauthenticatedError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { GetDataKeyRequest__Output } from "../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import type { KeyServiceHandlers } from "../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { AllowList } from "./authz.js";
import type { Authorizer } from "./authz/authorizer.js";
import { AuthzRefusal } from "./authz/refusal.js";
import { bearerToken } from "./authz/tokens.js";
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
  readonly peer: string;
  readonly authorised: boolean;
  readonly reason?: string;
}

/** Who the node token proved is asking, and why the key may be had. */
interface NodeFacts {
  node?: string | undefined;
  pod?: string | undefined;
  via?: string | undefined;
}

/**
 * GetDataKey as a grpc-js handler: who is calling → may they → derive → answer. The certificate
 * and the token are checked before the request is looked at, so a caller that may not ask learns
 * nothing, not even which ids are well-formed; the key id's authorisation comes after the input
 * check. Every request leaves exactly one audit line (caller, node, pod, key id, result,
 * duration, and why; never the key) whatever happens.
 *
 * Written against grpc-js directly rather than through lib/grpc-handler.ts: this is the one
 * call that runs thousands of times a second, and a per-call child logger, AbortController and
 * promise chain cost more than the derivation (bench/keyservice's profile). Errors still map to
 * gRPC statuses in the one place that does it (lib/errors.ts toGrpcStatus).
 */
export function keyServiceImplementation(options: KeyServiceCoreOptions): KeyServiceHandlers {
  const { masterSecret, salt, audit, authorizer, observe } = options;
  // KMS mode hands a function, which throws UnavailableError while the secret is not in hand.
  const secret = typeof masterSecret === "function" ? masterSecret : (): Buffer | KeyObject => masterSecret;
  const wipe = wipeSoon();

  const finish = (
    call: ServerUnaryCall<GetDataKeyRequest__Output, GetDataKeyResponse>,
    callback: sendUnaryData<GetDataKeyResponse>,
    started: number,
    caller: Caller,
    answer: { key: Buffer } | { error: unknown },
    facts: NodeFacts | undefined,
  ): void => {
    let result = "OK";
    let reason: string | undefined;
    if ("key" in answer) {
      callback(null, { data_key: answer.key });
      // grpc-js has serialised the response into its frame by now; the copy is wiped in the
      // next macrotask (batched: one timer however many calls end in this turn).
      wipe(answer.key);
    } else {
      const status = toGrpcStatus(answer.error);
      result = GrpcStatus[status.code] ?? String(status.code);
      reason = status.details;
      callback({ code: status.code, details: status.details });
    }
    const seconds = (performance.now() - started) / 1000;
    const request = call.request;
    // pino leaves out undefined fields: one object shape for every line, no spreads.
    audit.info(
      {
        client: caller.client,
        peer: caller.peer,
        node: facts?.node,
        pod: facts?.pod,
        data_key_id: truncate(request.data_key_id),
        length: request.length,
        result,
        ms: Math.round(seconds * 1e6) / 1e3,
        via: facts?.via,
        reason,
      },
      "GetDataKey",
    );
    observe?.(result, seconds);
  };

  /** The path with per-node authorisation: a token to verify and caches to ask, so asynchronous. */
  const authorised = async (
    call: ServerUnaryCall<GetDataKeyRequest__Output, GetDataKeyResponse>,
    callback: sendUnaryData<GetDataKeyResponse>,
    started: number,
    caller: Caller,
    authz: Authorizer,
  ): Promise<void> => {
    const facts: NodeFacts = {};
    let answer: { key: Buffer } | { error: unknown };
    try {
      const who = await authz.identify(bearerToken(call.metadata.get("authorization")));
      facts.node = who.node;
      facts.pod = who.pod;
      const { data_key_id: keyId, length } = call.request;
      checkDataKeyRequest(keyId, length);
      facts.via = await authz.authorize(who, keyId);
      answer = { key: deriveDataKey(secret(), salt, keyId, length) };
    } catch (err) {
      if (err instanceof AuthzRefusal) {
        facts.node = err.caller.node;
        facts.pod = err.caller.pod;
        answer = { error: err.error };
      } else {
        answer = { error: err };
      }
    }
    finish(call, callback, started, caller, answer, facts);
  };

  return {
    GetDataKey(call, callback) {
      const started = performance.now();
      const caller = identifyCaller(call, options);
      if (!caller.authorised) {
        const error = caller.reason === "no client certificate" ? new UnauthenticatedError("no client certificate") : new PermissionDeniedError(`client ${caller.client} is not allowed to get data keys`);
        finish(call, callback, started, caller, { error }, undefined);
        return;
      }
      if (authorizer) {
        authorised(call, callback, started, caller, authorizer).catch((err: unknown) =>
          // Only finish() could throw here, after the answer went out: say so rather than crash.
          audit.error({ err: err instanceof Error ? err.message : String(err), data_key_id: truncate(call.request.data_key_id) }, "GetDataKey failed after answering"),
        );
        return;
      }
      let answer: { key: Buffer } | { error: unknown };
      try {
        answer = { key: deriveDataKey(secret(), salt, call.request.data_key_id, call.request.length) };
      } catch (err) {
        answer = { error: err };
      }
      finish(call, callback, started, caller, answer, undefined);
    },
  };
}

/** Zeroes buffers in the next macrotask, with one timer for all that end in the same turn. */
function wipeSoon(): (buffer: Buffer) => void {
  let pending: Buffer[] = [];
  const run = (): void => {
    const buffers = pending;
    pending = [];
    for (const b of buffers) b.fill(0);
  };
  return (buffer) => {
    if (pending.push(buffer) === 1) setImmediate(run);
  };
}

function identifyCaller(call: ServerUnaryCall<unknown, unknown>, options: KeyServiceCoreOptions): Caller {
  if (options.authMode === "insecure-dev") return { client: "insecure-dev", peer: call.getPeer(), authorised: true };
  const peer = peerOf(call);
  // The handshake already refused clients without a certificate from our CA; this is the net
  // under that, should the server ever be started with weaker credentials.
  if (!peer) return { client: "-", peer: call.getPeer(), authorised: false, reason: "no client certificate" };
  const match = options.allowList().match(peer.identity);
  if (match) return { client: match.name, peer: peer.address, authorised: true };
  const names = identityNames(peer.identity);
  return { client: names.length > 0 ? names.join(",") : `(no URI or DNS name; subject ${peer.subject})`, peer: peer.address, authorised: false };
}

/** Key ids are caller input: an absurd one must not become an absurd log line. */
function truncate(text: string): string {
  return text.length > 300 ? `${text.slice(0, 300)}…(${text.length} chars)` : text;
}
