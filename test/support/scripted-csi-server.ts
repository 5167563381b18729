import { Server, ServerCredentials, status, type ServiceDefinition, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";

/**
 * A CSI server for unit tests of the wrapper's plumbing: it records every request as the bytes
 * that arrived (with the deadline the caller set) and answers each method with what the test
 * scripted — a response object, raw bytes, an error, or nothing at all (a hang). Not a CSI
 * driver: the wrapper's behaviour against a real one is tested with test/blockdriver.
 */
export interface RecordedCall {
  readonly method: string;
  readonly bytes: Buffer;
  /** ms since the epoch, or undefined. */
  readonly deadline: number | undefined;
}

export type Script =
  | { readonly response: object }
  | { readonly bytes: Buffer }
  | { readonly error: { code: status; details: string } }
  | { readonly hang: true };

export interface ScriptedCsiServer {
  readonly calls: RecordedCall[];
  /** Methods without a script answer Unimplemented. */
  readonly scripts: Map<string, Script>;
  /** The decoded request of a recorded call. */
  decode(call: RecordedCall): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startScriptedCsiServer(socketPath: string): Promise<ScriptedCsiServer> {
  const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
  const calls: RecordedCall[] = [];
  const scripts = new Map<string, Script>();
  const methods = new Map<string, MethodDefinition<object, object, Record<string, unknown>, object>>();
  const server = new Server();
  for (const service of [csi.Identity.service, csi.Controller.service, csi.Node.service] as ServiceDefinition[]) {
    const definition: Record<string, unknown> = {};
    const implementation: Record<string, unknown> = {};
    for (const [name, m] of Object.entries(service)) {
      const method = m as unknown as MethodDefinition<object, object, Record<string, unknown>, object>;
      methods.set(name, method);
      definition[name] = {
        ...method,
        requestDeserialize: (bytes: Buffer) => bytes,
        responseSerialize: (value: Buffer | object) => (Buffer.isBuffer(value) ? value : method.responseSerialize(value)),
      };
      implementation[name] = (call: ServerUnaryCall<Buffer, unknown>, callback: sendUnaryData<unknown>) => {
        const deadline = call.getDeadline();
        const at = deadline instanceof Date ? deadline.getTime() : deadline;
        calls.push({ method: name, bytes: call.request, deadline: Number.isFinite(at) ? at : undefined });
        const script = scripts.get(name);
        if (!script) callback({ code: status.UNIMPLEMENTED, details: `${name} is not scripted` });
        else if ("hang" in script) return;
        else if ("error" in script) callback(script.error);
        else if ("bytes" in script) callback(null, script.bytes);
        else callback(null, script.response);
      };
    }
    server.addService(definition as ServiceDefinition, implementation as never);
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    calls,
    scripts,
    decode: (call) => {
      const method = methods.get(call.method);
      if (!method) throw new Error(`unknown method ${call.method}`);
      return method.requestDeserialize(call.bytes);
    },
    stop: async () => server.forceShutdown(),
  };
}
