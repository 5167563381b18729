import type { PermissionDeniedError, UnauthenticatedError } from "../../lib/errors.js";

/** Who the node token proved is calling: what the audit line names. */
export interface NodeCaller {
  readonly node: string;
  readonly pod: string;
}

/**
 * A refusal that knows who asked, for the audit line. Its own module so that the request path
 * (keyservice/service.ts) can recognise it without loading the Kubernetes client, which a
 * service without per-node authorisation never needs.
 */
export class AuthzRefusal extends Error {
  constructor(
    readonly error: UnauthenticatedError | PermissionDeniedError,
    readonly caller: Partial<NodeCaller>,
  ) {
    super(error.message);
  }
}
