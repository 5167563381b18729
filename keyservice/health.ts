import { EventEmitter } from "node:events";
import { Metadata, status as GrpcStatus, type ServerWritableStream } from "@grpc/grpc-js";
import type { HealthHandlers } from "../proto/gen/grpc/health/v1/Health.js";
import type { HealthCheckRequest__Output } from "../proto/gen/grpc/health/v1/HealthCheckRequest.js";
import type { HealthCheckResponse } from "../proto/gen/grpc/health/v1/HealthCheckResponse.js";

export type ServingStatus = "SERVING" | "NOT_SERVING";

/**
 * Serving status per service name ("" is the server as a whole), for grpc.health.v1.Health.
 * A stopping server sets NOT_SERVING first, so that health-checking clients stop sending new
 * calls while in-flight ones drain.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly changes = new EventEmitter();

  constructor(services: readonly string[]) {
    this.changes.setMaxListeners(0);
    for (const name of ["", ...services]) this.statuses.set(name, "NOT_SERVING");
  }

  /** Sets every known service at once. */
  setAll(status: ServingStatus): void {
    for (const name of this.statuses.keys()) {
      this.statuses.set(name, status);
      this.changes.emit(name, status);
    }
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  onChange(service: string, listener: (status: ServingStatus) => void): () => void {
    this.changes.on(service, listener);
    return () => this.changes.off(service, listener);
  }
}

/** The standard Health service: Check answers NOT_FOUND for unknown services, as specified. */
export function healthHandlers(health: HealthStatus): HealthHandlers {
  return {
    Check(call, callback) {
      const status = health.get(call.request.service);
      if (status === undefined) {
        callback({ code: GrpcStatus.NOT_FOUND, details: `unknown service ${call.request.service}`, metadata: new Metadata() });
        return;
      }
      callback(null, { status });
    },
    Watch(call: ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>) {
      const service = call.request.service;
      const send = (status: HealthCheckResponse["status"]): void => {
        call.write({ status });
      };
      send(health.get(service) ?? "SERVICE_UNKNOWN");
      const unsubscribe = health.onChange(service, send);
      call.once("cancelled", unsubscribe);
      call.once("close", unsubscribe);
    },
  };
}
