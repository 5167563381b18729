import { EventEmitter } from "node:events";
import { Metadata, status, type handleUnaryCall, type ServerUnaryCall, type ServiceDefinition } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { NotFoundError } from "./errors.js";
import { redactSecrets, toGrpcHandlers, type CallObserver } from "./grpc-handler.js";
import { createLogger } from "./log.js";

describe("redactSecrets", () => {
  it("blanks the values of every secrets map, at any depth, and keeps the rest", () => {
    const request = {
      volume_id: "vol-1",
      secrets: { password: "hunter2", token: "t" },
      nested: [{ secrets: { key: "k" }, keep: 1 }],
    };
    expect(redactSecrets(request)).toEqual({
      volume_id: "vol-1",
      secrets: { password: "[redacted]", token: "[redacted]" },
      nested: [{ secrets: { key: "[redacted]" }, keep: 1 }],
    });
    expect(request.secrets.password).toBe("hunter2");
  });
});

describe("toGrpcHandlers' observer", () => {
  const log = createLogger({ component: "test", level: "silent" });
  const definition = { Ok: {}, Fails: {}, Missing: {} } as unknown as ServiceDefinition;
  const handlers = {
    Ok: async () => ({ fine: true }),
    Fails: async () => {
      throw new NotFoundError("no such thing");
    },
  };

  function fakeCall(): ServerUnaryCall<unknown, unknown> {
    const call = new EventEmitter() as unknown as ServerUnaryCall<unknown, unknown> & { metadata: Metadata; getDeadline(): number };
    Object.assign(call, { request: { volume_id: "v1" }, metadata: new Metadata(), getDeadline: () => Infinity });
    return call;
  }

  async function invoke(table: Record<string, handleUnaryCall<unknown, unknown>>, method: string): Promise<unknown> {
    return new Promise((resolve) => table[method]?.(fakeCall(), (err, value) => resolve(err ?? value)));
  }

  it("sees every call start and end, with its status code name and duration, for handled and unhandled methods", async () => {
    const events: string[] = [];
    const observer: CallObserver = {
      callStarted(method) {
        events.push(`start ${method}`);
        return (code, seconds) => {
          expect(seconds).toBeGreaterThanOrEqual(0);
          events.push(`end ${method} ${code}`);
        };
      },
    };
    const table = toGrpcHandlers("test.v1.Svc", definition, handlers, log, observer) as unknown as Record<string, handleUnaryCall<unknown, unknown>>;
    expect(await invoke(table, "Ok")).toEqual({ fine: true });
    expect(await invoke(table, "Fails")).toMatchObject({ code: status.NOT_FOUND });
    expect(await invoke(table, "Missing")).toMatchObject({ code: status.UNIMPLEMENTED });
    expect(events).toEqual([
      "start test.v1.Svc/Ok",
      "end test.v1.Svc/Ok OK",
      "start test.v1.Svc/Fails",
      "end test.v1.Svc/Fails NOT_FOUND",
      "start test.v1.Svc/Missing",
      "end test.v1.Svc/Missing UNIMPLEMENTED",
    ]);
  });

  it("is optional", async () => {
    const table = toGrpcHandlers("test.v1.Svc", definition, handlers, log) as unknown as Record<string, handleUnaryCall<unknown, unknown>>;
    expect(await invoke(table, "Ok")).toEqual({ fine: true });
  });
});
