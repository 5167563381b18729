import {
  Metadata,
  status as GrpcStatus,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "./log.js";
import { toGrpcStatus } from "./errors.js";

/** What a handler gets besides its request. */
export interface CallContext {
  /** Fires when the caller cancels or its deadline passes: long operations stop then. */
  readonly signal: AbortSignal;
  /** A child logger already carrying the method and the request's ids. */
  readonly log: Logger;
  /** The underlying call, for what only the transport knows (peer certificate, address). */
  readonly call: ServerUnaryCall<unknown, unknown>;
}

/** One async function per RPC: the shape every cloak service is written in. */
export type AsyncHandlers<H> = {
  [K in keyof H as string extends K ? never : K]?: H[K] extends handleUnaryCall<infer Req, infer Res>
    ? (request: Req, context: CallContext) => Promise<Res>
    : never;
};

/**
 * Watches every call a service wrapped by toGrpcHandlers receives (metrics): `callStarted` runs
 * when a call arrives, and the function it returns when the call is answered, with the gRPC
 * status code's name (OK, NOT_FOUND, …) and how long the call took.
 */
export interface CallObserver {
  callStarted(method: string): (code: string, seconds: number) => void;
}

/**
 * Metadata a process sets on calls to itself (its health checks, every few seconds): those are
 * logged at debug when they succeed, so that kubelet's probes do not fill the log. Failures are
 * logged as always.
 */
export const SELF_CHECK_METADATA = "cloak-self-check";

/** Request fields worth a column in every log line: they identify what was acted on. */
const ID_FIELDS = ["volume_id", "source_volume_id", "snapshot_id", "node_id", "name", "data_key_id"] as const;

/**
 * Turns async handlers into grpc-js handlers: one place that logs each call (ids, outcome,
 * duration; never secrets, never responses), turns the call's cancellation and deadline into
 * an AbortSignal, and maps every error to its gRPC status. Methods without a handler answer
 * Unimplemented.
 */
export function toGrpcHandlers<H extends UntypedServiceImplementation>(
  service: string,
  definition: ServiceDefinition,
  handlers: AsyncHandlers<H>,
  log: Logger,
  observer?: CallObserver,
): H {
  const table: Record<string, handleUnaryCall<unknown, unknown>> = {};
  const byName = handlers as Record<string, ((req: unknown, ctx: CallContext) => Promise<unknown>) | undefined>;
  for (const method of Object.keys(definition)) {
    table[method] = wrapUnary(`${service}/${method}`, byName[method], log, observer);
  }
  return table as unknown as H;
}

function wrapUnary(
  method: string,
  handler: ((req: unknown, ctx: CallContext) => Promise<unknown>) | undefined,
  log: Logger,
  observer: CallObserver | undefined,
): handleUnaryCall<unknown, unknown> {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const started = performance.now();
    const finished = observer?.callStarted(method);
    const callLog = log.child({ method, ...requestIds(call.request) });
    if (!handler) {
      finished?.("UNIMPLEMENTED", 0);
      callLog.info({ code: "UNIMPLEMENTED", ms: 0 }, "call");
      callback({ code: GrpcStatus.UNIMPLEMENTED, details: `${method} is not implemented`, metadata: new Metadata() });
      return;
    }
    const abort = new AbortController();
    const onCancel = (): void => abort.abort(new Error(`${method}: the caller cancelled`));
    call.once("cancelled", onCancel);
    const timer = deadlineTimer(call, abort, method);
    // Checked first: the redacted copy costs a walk over the request even when nothing logs it.
    if (callLog.isLevelEnabled("debug")) callLog.debug({ request: redactSecrets(call.request) }, "request");
    handler(call.request, { signal: abort.signal, log: callLog, call })
      .then(
        (response) => {
          finished?.("OK", (performance.now() - started) / 1000);
          const level = call.metadata.get(SELF_CHECK_METADATA).length > 0 ? "debug" : "info";
          callLog[level]({ code: "OK", ms: elapsed(started) }, "call");
          callback(null, response);
        },
        (err: unknown) => {
          const failure = toGrpcStatus(err);
          finished?.(GrpcStatus[failure.code], (performance.now() - started) / 1000);
          const level = failure.code === GrpcStatus.INTERNAL ? "error" : "warn";
          callLog[level]({ code: GrpcStatus[failure.code], ms: elapsed(started), err: failure.details }, "call failed");
          callback({ code: failure.code, details: failure.details, metadata: new Metadata() });
        },
      )
      .finally(() => {
        if (timer) clearTimeout(timer);
        call.removeListener("cancelled", onCancel);
      });
  };
}

function deadlineTimer(
  call: ServerUnaryCall<unknown, unknown>,
  abort: AbortController,
  method: string,
): NodeJS.Timeout | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  const timer = setTimeout(() => abort.abort(new Error(`${method}: deadline exceeded`)), Math.max(0, at - Date.now()));
  timer.unref();
  return timer;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

function requestIds(request: unknown): Record<string, string> {
  const ids: Record<string, string> = {};
  if (typeof request !== "object" || request === null) return ids;
  const fields = request as Record<string, unknown>;
  for (const field of ID_FIELDS) {
    const value = fields[field];
    if (typeof value === "string" && value !== "") ids[field] = value;
  }
  return ids;
}

/**
 * A copy of a request fit for a debug log: CSI `secrets` maps (the fields csi.proto marks
 * csi_secret) lose their values, recursively.
 */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (typeof value !== "object" || value === null || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (key === "secrets" && typeof inner === "object" && inner !== null) {
      out[key] = Object.fromEntries(Object.keys(inner).map((k) => [k, "[redacted]"]));
    } else {
      out[key] = redactSecrets(inner);
    }
  }
  return out;
}
