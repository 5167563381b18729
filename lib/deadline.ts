import type { ServerUnaryCall } from "@grpc/grpc-js";

/** The deadline a gRPC caller set, in ms since the epoch, or undefined when it set none. */
export function callDeadline(call: Pick<ServerUnaryCall<unknown, unknown>, "getDeadline">): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? at : undefined;
}

export interface DeadlineOptions {
  /** Used when the caller set no deadline. */
  readonly defaultMs: number;
  /** Kept back from the caller's deadline so that an answer (an error) can still reach it. */
  readonly marginFraction: number;
  readonly minMarginMs: number;
  readonly maxMarginMs: number;
}

/**
 * The deadline for a call made on behalf of a caller: the caller's, less a margin in which the
 * outer call can still report what happened (a timed-out inner call then arrives as a clear
 * DeadlineExceeded naming it, not as the caller's own expiry). Pure.
 */
export function innerDeadline(outer: number | undefined, now: number, options: DeadlineOptions): number {
  if (outer === undefined) return now + options.defaultMs;
  const remaining = Math.max(0, outer - now);
  const margin = Math.min(options.maxMarginMs, Math.max(options.minMarginMs, remaining * options.marginFraction));
  return now + Math.max(0, remaining - margin);
}
