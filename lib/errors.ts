import { status as GrpcStatus } from "@grpc/grpc-js";

/**
 * The failures cloak reports. Every error a handler lets escape is one of these (or is turned
 * into Internal by {@link toGrpcStatus}); each class names one gRPC status, so the status a
 * caller sees is decided where the failure is understood, not guessed at the edge.
 */
export abstract class CloakError extends Error {
  abstract readonly code: GrpcStatus;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends CloakError {
  readonly code = GrpcStatus.INVALID_ARGUMENT;
}

export class NotFoundError extends CloakError {
  readonly code = GrpcStatus.NOT_FOUND;
}

export class AlreadyExistsError extends CloakError {
  readonly code = GrpcStatus.ALREADY_EXISTS;
}

/** The system is not in a state the call can act on, and retrying will not change that. */
export class FailedPreconditionError extends CloakError {
  readonly code = GrpcStatus.FAILED_PRECONDITION;
}

/** Another operation holds the resource; the caller should retry later. */
export class AbortedError extends CloakError {
  readonly code = GrpcStatus.ABORTED;
}

/** A dependency (key service, API server) cannot be reached; the caller should retry. */
export class UnavailableError extends CloakError {
  readonly code = GrpcStatus.UNAVAILABLE;
}

export class DeadlineExceededError extends CloakError {
  readonly code = GrpcStatus.DEADLINE_EXCEEDED;
}

export class OutOfRangeError extends CloakError {
  readonly code = GrpcStatus.OUT_OF_RANGE;
}

export class ResourceExhaustedError extends CloakError {
  readonly code = GrpcStatus.RESOURCE_EXHAUSTED;
}

export class PermissionDeniedError extends CloakError {
  readonly code = GrpcStatus.PERMISSION_DENIED;
}

export class UnauthenticatedError extends CloakError {
  readonly code = GrpcStatus.UNAUTHENTICATED;
}

export class UnimplementedError extends CloakError {
  readonly code = GrpcStatus.UNIMPLEMENTED;
}

export class InternalError extends CloakError {
  readonly code = GrpcStatus.INTERNAL;
}

/**
 * The CloakError for a status another gRPC service answered with, so that a failure relayed
 * from a call cloak made (a wrapped CSI driver) reaches cloak's own caller through the same
 * mapping. Unknown (Go servers answer it for any plain error) becomes Internal, and Cancelled
 * Aborted (retry later): neither may reach a CSI caller. OK is not a failure and also Internal.
 */
export function errorForStatus(code: GrpcStatus, message: string, options?: { cause?: unknown }): CloakError {
  switch (code) {
    case GrpcStatus.INVALID_ARGUMENT:
      return new InvalidArgumentError(message, options);
    case GrpcStatus.NOT_FOUND:
      return new NotFoundError(message, options);
    case GrpcStatus.ALREADY_EXISTS:
      return new AlreadyExistsError(message, options);
    case GrpcStatus.FAILED_PRECONDITION:
      return new FailedPreconditionError(message, options);
    case GrpcStatus.ABORTED:
    case GrpcStatus.CANCELLED:
      return new AbortedError(message, options);
    case GrpcStatus.UNAVAILABLE:
      return new UnavailableError(message, options);
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message, options);
    case GrpcStatus.OUT_OF_RANGE:
      return new OutOfRangeError(message, options);
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(message, options);
    case GrpcStatus.PERMISSION_DENIED:
      return new PermissionDeniedError(message, options);
    case GrpcStatus.UNAUTHENTICATED:
      return new UnauthenticatedError(message, options);
    case GrpcStatus.UNIMPLEMENTED:
      return new UnimplementedError(message, options);
    default:
      return new InternalError(message, options);
  }
}

/** What a failed call returns to its gRPC caller. */
export interface GrpcFailure {
  code: GrpcStatus;
  details: string;
}

/**
 * The one mapping from errors to gRPC statuses. CloakErrors carry their own; errors that
 * already carry a gRPC status (from a client call we made) keep it; anything else is a bug or
 * an unexpected system failure and becomes Internal, never Unknown.
 */
export function toGrpcStatus(err: unknown): GrpcFailure {
  if (err instanceof CloakError) return { code: err.code, details: err.message };
  if (isGrpcServiceError(err)) return { code: err.code === GrpcStatus.UNKNOWN ? GrpcStatus.INTERNAL : err.code, details: err.details };
  const message = err instanceof Error ? err.message : String(err);
  return { code: GrpcStatus.INTERNAL, details: message };
}

function isGrpcServiceError(err: unknown): err is { code: GrpcStatus; details: string } {
  if (typeof err !== "object" || err === null) return false;
  const candidate = err as { code?: unknown; details?: unknown };
  return (
    typeof candidate.code === "number" &&
    candidate.code > GrpcStatus.OK &&
    candidate.code <= GrpcStatus.UNAUTHENTICATED &&
    typeof candidate.details === "string"
  );
}
