import { Metadata, status as GrpcStatus, type ServerUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { deriveDataKey } from "../lib/data-key.js";
import { UnavailableError } from "../lib/errors.js";
import { createLogger } from "../lib/log.js";
import type { Authorizer } from "./authz/authorizer.js";
import { compileAllowList } from "./authz.js";
import type { GetDataKeyRequest__Output } from "../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import { keyServiceImplementation, type AuthMode, type KeyServiceCoreOptions } from "./service.js";

const master = Buffer.alloc(32, 1);
const salt = Buffer.alloc(32, 2);
const ALLOWED = "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node";

function harness(authMode: AuthMode = "mtls", more: Partial<Pick<KeyServiceCoreOptions, "masterSecret" | "authorizer">> = {}) {
  const lines: Record<string, unknown>[] = [];
  const audit = createLogger({ component: "keyservice", level: "info", destination: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) } });
  const observed: [string, number][] = [];
  const handlers = keyServiceImplementation({
    masterSecret: master,
    salt,
    authMode,
    allowList: () => compileAllowList([ALLOWED]),
    audit,
    observe: (result, seconds) => observed.push([result, seconds]),
    ...more,
  });
  /** One call as grpc-js makes it (without a session, so peerOf() reads the auth context). */
  const request = (subjectaltname: string | undefined, data_key_id: string, length: number) =>
    new Promise<GetDataKeyResponse>((resolve, reject) => {
      const call = {
        request: { data_key_id, length },
        metadata: withToken(new Metadata()),
        getAuthContext: () => (subjectaltname === undefined ? {} : { transportSecurityType: "ssl", sslPeerCertificate: { subjectaltname, subject: { CN: "x" } } }),
        getPeer: () => "127.0.0.1:5555",
      } as unknown as ServerUnaryCall<GetDataKeyRequest__Output, GetDataKeyResponse>;
      handlers.GetDataKey(call, (err, value) => (err ? reject(err as ServiceError) : resolve(value as GetDataKeyResponse)));
    });
  const call = (subjectaltname: string) => request(subjectaltname, "vol-1", 32);
  return { lines, observed, call, request };
}

function withToken(metadata: Metadata): Metadata {
  metadata.set("authorization", "Bearer node-token");
  return metadata;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "OK";
  } catch (err) {
    return GrpcStatus[(err as ServiceError).code];
  }
};

describe("GetDataKey", () => {
  it("derives the key for an allowed client and audits one line without the key", async () => {
    const h = harness();
    const response = await h.call(`URI:${ALLOWED}`);
    const expected = deriveDataKey(master, salt, "vol-1", 32);
    expect(Buffer.from(response.data_key as Buffer).equals(expected)).toBe(true);
    expect(h.lines).toHaveLength(1);
    expect(h.lines[0]).toMatchObject({ client: ALLOWED, peer: "127.0.0.1:5555", data_key_id: "vol-1", length: 32, result: "OK", msg: "GetDataKey" });
    expect(typeof h.lines[0]?.["ms"]).toBe("number");
    const text = JSON.stringify(h.lines);
    expect(text).not.toContain(expected.toString("hex"));
    expect(text).not.toContain(expected.toString("base64"));
    expect(h.observed.map(([r]) => r)).toEqual(["OK"]);
  });

  it("wipes its copy of the key once gRPC has serialised it", async () => {
    const h = harness();
    const response = await h.call(`URI:${ALLOWED}`);
    const key = response.data_key as Buffer;
    expect(key.some((b) => b !== 0)).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(key.every((b) => b === 0)).toBe(true);
  });

  it("refuses other identities with PermissionDenied before looking at the request", async () => {
    const h = harness();
    expect(await codeOf(h.request("URI:spiffe://cloak/ns/other/sa/x, DNS:x.example", "", 0))).toBe("PERMISSION_DENIED");
    expect(h.lines[0]).toMatchObject({ client: "spiffe://cloak/ns/other/sa/x,x.example", result: "PERMISSION_DENIED" });
    expect(await codeOf(h.request("", "vol-1", 32))).toBe("PERMISSION_DENIED");
    expect(h.lines[1]?.["client"]).toMatch(/no URI or DNS name; subject CN=x/);
    expect(await codeOf(h.request(undefined, "vol-1", 32))).toBe("UNAUTHENTICATED");
    expect(h.observed.map(([r]) => r)).toEqual(["PERMISSION_DENIED", "PERMISSION_DENIED", "UNAUTHENTICATED"]);
  });

  it("answers InvalidArgument for bad ids and lengths, and audits them with the reason", async () => {
    const h = harness();
    for (const [id, length] of [["", 32], ["a".repeat(400), 32], ["a/b", 32], ["ok", 15], ["ok", 65]] as const) {
      expect(await codeOf(h.request(`URI:${ALLOWED}`, id, length)), `${id.slice(0, 10)} ${length}`).toBe("INVALID_ARGUMENT");
    }
    expect(h.lines.every((l) => l["result"] === "INVALID_ARGUMENT" && typeof l["reason"] === "string")).toBe(true);
    expect(String(h.lines[1]?.["data_key_id"])).toMatch(/…\(400 chars\)$/);
  });

  it("serves anyone in insecure development mode, audited as such", async () => {
    const h = harness("insecure-dev");
    expect(await codeOf(h.request(undefined, "vol-1", 32))).toBe("OK");
    expect(h.lines[0]).toMatchObject({ client: "insecure-dev", result: "OK" });
  });

  it("with per-node authorisation and a KMS-held secret: the node must be authorised, and no key while the secret is away", async () => {
    let secret: Buffer | undefined = master;
    const { createSecretKey } = await import("node:crypto");
    const authorizer = {
      identify: (bearer: string | undefined) => (bearer === "node-token" ? Promise.resolve({ node: "n1", pod: "cloak-system/csi-n1" }) : Promise.reject(new Error("no token"))),
      authorize: (_caller: unknown, keyId: string) => (keyId === "vol-1" ? Promise.resolve("pod apps/web uses claim apps/data") : Promise.reject(new Error("not on n1"))),
    } as unknown as Authorizer;
    const masterSecret = () => {
      if (!secret) throw new UnavailableError("the master secret is not unwrapped (KMS unreachable)");
      return createSecretKey(secret);
    };
    const h = harness("mtls", { masterSecret, authorizer });
    const response = await h.call(`URI:${ALLOWED}`);
    expect(Buffer.from(response.data_key as Buffer).equals(deriveDataKey(master, salt, "vol-1", 32))).toBe(true);
    expect(h.lines.at(-1)).toMatchObject({ result: "OK", node: "n1", pod: "cloak-system/csi-n1", via: "pod apps/web uses claim apps/data" });
    secret = undefined;
    expect(await codeOf(h.call(`URI:${ALLOWED}`))).toBe("UNAVAILABLE");
    expect(h.lines.at(-1)).toMatchObject({ result: "UNAVAILABLE", node: "n1", reason: expect.stringMatching(/not unwrapped/) });
  });
});
