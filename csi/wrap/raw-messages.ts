import type { MethodDefinition } from "@grpc/proto-loader";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { InternalError } from "../../lib/errors.js";

/**
 * Lets a handler see the bytes of its request and answer with bytes of its own choosing, so
 * that the wrapper forwards messages without decoding and re-encoding them (which drops the
 * fields cloak's csi.proto does not know). The handler still gets the decoded request, for
 * checks and logs; a response registered with {@link respondWith} is sent as its bytes.
 */
const requestBytes = new WeakMap<object, Buffer>();
const responseBytes = new WeakMap<object, Buffer>();

/** The service definition with both hooks in every method. */
export function withRawMessages<D extends ServiceDefinition>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const m = method as unknown as MethodDefinition<object, object, object, object>;
    out[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer): object => {
        const decoded = m.requestDeserialize(bytes);
        requestBytes.set(decoded, bytes);
        return decoded;
      },
      responseSerialize: (value: object): Buffer => responseBytes.get(value) ?? m.responseSerialize(value),
    };
  }
  return out as D;
}

/** The bytes `request` was decoded from. */
export function bytesOf(request: object): Buffer {
  const bytes = requestBytes.get(request);
  if (!bytes) throw new InternalError("the request's bytes are not available: the service was not registered withRawMessages");
  return bytes;
}

/** Answers with `bytes`; `decoded` is what the handler (and its log) sees of them. */
export function respondWith<T extends object>(decoded: T, bytes: Buffer): T {
  responseBytes.set(decoded, bytes);
  return decoded;
}
