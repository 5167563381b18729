import { Client, Metadata, credentials, status as GrpcStatus, type ServiceDefinition, type ServiceError } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { errorForStatus } from "../../lib/errors.js";
import { innerDeadline, type DeadlineOptions } from "../../lib/deadline.js";
import { formatEndpoint, type Endpoint } from "../../lib/grpc-server.js";
import type { Logger } from "../../lib/log.js";
import type { CallBounds } from "../disk/disk-source.js";

type RequestOf<M> = M extends MethodDefinition<infer Req, infer _Res, infer _ReqOut, infer _ResOut> ? Req : never;
type ResponseOf<M> = M extends MethodDefinition<infer _Req, infer _Res, infer _ReqOut, infer ResOut> ? ResOut : never;

/**
 * Deadlines of inner calls: the caller's less 10 % (between 0.5 and 5 s), so that a hung inner
 * driver is reported to cloak's caller as such before the caller gives up; two minutes (what
 * kubelet and the sidecars use) when the caller set none.
 */
export const INNER_DEADLINES: DeadlineOptions = { defaultMs: 120_000, marginFraction: 0.1, minMarginMs: 500, maxMarginMs: 5_000 };

const IDENTITY_MARSHALLING = (bytes: Buffer): Buffer => bytes;

/**
 * The wrapped ("inner") CSI driver: one long-lived gRPC channel to its unix socket, shared by
 * every call (grpc-js reconnects it when the driver restarts). Each call carries a deadline
 * derived from the caller's and stops when the caller cancels. A failure comes back as the
 * CloakError for the inner driver's status (lib/errors.ts), its message naming the driver and
 * the method, so that kubelet's events say where a problem is.
 */
export class InnerDriver {
  private readonly client: Client;
  readonly target: string;

  constructor(
    endpoint: Endpoint,
    private readonly log: Logger,
  ) {
    this.target = formatEndpoint(endpoint);
    this.client = new Client(this.target, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
      // A wrapped driver on a unix socket: reconnect fast after it restarts.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 5_000,
    });
  }

  /** A call with a request cloak built; the response decoded. */
  call<D extends ServiceDefinition, K extends keyof D & string>(
    definition: D,
    method: K,
    request: RequestOf<D[K]>,
    bounds: CallBounds,
  ): Promise<ResponseOf<D[K]>> {
    const def = definition[method] as unknown as MethodDefinition<object, object, object, object>;
    return this.unary(def, method, def.requestSerialize, def.responseDeserialize, request as object, bounds) as Promise<ResponseOf<D[K]>>;
  }

  /** A call with an encoded request; the encoded response, byte for byte as the driver sent it. */
  callRaw<D extends ServiceDefinition>(definition: D, method: keyof D & string, request: Buffer, bounds: CallBounds): Promise<Buffer> {
    const def = definition[method] as unknown as MethodDefinition<object, object, object, object>;
    return this.unary(def, method, IDENTITY_MARSHALLING, IDENTITY_MARSHALLING, request, bounds);
  }

  close(): void {
    this.client.close();
  }

  private unary<Req, Res>(
    def: MethodDefinition<object, object, object, object>,
    method: string,
    serialize: (value: Req) => Buffer,
    deserialize: (bytes: Buffer) => Res,
    request: Req,
    bounds: CallBounds,
  ): Promise<Res> {
    const started = performance.now();
    const deadline = innerDeadline(bounds.deadline, Date.now(), INNER_DEADLINES);
    const budgetMs = Math.max(0, deadline - Date.now());
    return new Promise<Res>((resolve, reject) => {
      if (bounds.signal.aborted) {
        reject(errorForStatus(GrpcStatus.CANCELLED, `inner driver ${this.target} ${method}: not called, the caller cancelled`));
        return;
      }
      const onAbort = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(
        def.path,
        serialize,
        deserialize,
        request,
        new Metadata(),
        { deadline },
        (error: ServiceError | null, response?: Res) => {
          bounds.signal.removeEventListener("abort", onAbort);
          const ms = Math.round(performance.now() - started);
          if (!error) {
            this.log.debug({ inner: method, ms }, "inner call");
            resolve(response as Res);
            return;
          }
          this.log.debug({ inner: method, ms, code: GrpcStatus[error.code] }, "inner call failed");
          reject(this.failure(method, error, budgetMs));
        },
      );
      bounds.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private failure(method: string, error: ServiceError, budgetMs: number): Error {
    const what = `inner driver ${this.target} ${method}`;
    switch (error.code) {
      case GrpcStatus.DEADLINE_EXCEEDED:
        return errorForStatus(
          error.code,
          `${what} did not answer within ${budgetMs} ms (the caller's deadline less a margin): ${error.details}`,
          { cause: error },
        );
      case GrpcStatus.UNAVAILABLE:
        return errorForStatus(error.code, `${what}: the driver is unreachable (is its node plugin running, and is its socket mounted here?): ${error.details}`, {
          cause: error,
        });
      default:
        return errorForStatus(error.code, `${what}: ${error.details}`, { cause: error });
    }
  }
}
