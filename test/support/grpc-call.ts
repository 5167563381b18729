import { Metadata, type Client, type ServiceDefinition, type ServiceError } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";

type RequestOf<M> = M extends MethodDefinition<infer Req, infer _Res, infer _ReqOut, infer _ResOut> ? Req : never;
type ResponseOf<M> = M extends MethodDefinition<infer _Req, infer _Res, infer _ReqOut, infer ResOut> ? ResOut : never;

export type UnaryCaller<D extends ServiceDefinition> = <K extends keyof D & string>(
  method: K,
  request: RequestOf<D[K]>,
  options?: { timeoutMs?: number; metadata?: Metadata },
) => Promise<ResponseOf<D[K]>>;

/**
 * Promise-returning, fully typed calls of a service's unary methods, driven by the service
 * definition rather than grpc-js's overloaded client methods. A failed call rejects with the
 * ServiceError (`code`, `details`), which tests assert on as a CO would.
 */
export function unaryCaller<D extends ServiceDefinition>(client: Client, definition: D): UnaryCaller<D> {
  return (method, request, options) =>
    new Promise((resolve, reject) => {
      const def = definition[method] as unknown as MethodDefinition<object, object, object, object>;
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request as object,
        options?.metadata ?? new Metadata(),
        { deadline: Date.now() + (options?.timeoutMs ?? 120_000) },
        (error: ServiceError | null, value?: object) => {
          if (error) reject(error);
          else resolve(value as ResponseOf<D[typeof method]>);
        },
      );
    });
}
