import { credentials, Metadata } from "@grpc/grpc-js";
import { SELF_CHECK_METADATA } from "../../lib/grpc-handler.js";
import { formatEndpoint, type Endpoint } from "../../lib/grpc-server.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import type { IdentityClient } from "../../proto/gen/csi/v1/Identity.js";
import type { HealthCheck } from "./health-server.js";
import type { KeySourceMonitor } from "./key-source-monitor.js";

/**
 * The plugin's own gRPC server answers `method` on its endpoint, through a new connection as
 * kubelet and the sidecars would make one: the socket exists, the server is bound and the event
 * loop turns. GetPluginInfo for liveness (nothing but the server itself); Probe for readiness
 * (also the tools the plugin needs).
 */
export function grpcSelfCheck(endpoint: Endpoint, method: "GetPluginInfo" | "Probe"): HealthCheck {
  const Identity = loadProto<ProtoGrpcType>("csi.proto").csi.v1.Identity;
  const target = endpoint.kind === "tcp" ? formatEndpoint({ ...endpoint, host: loopbackFor(endpoint.host) }) : formatEndpoint(endpoint);
  return {
    name: method === "Probe" ? "csi-probe" : "grpc",
    check: (signal) =>
      new Promise<void>((resolve, reject) => {
        const client: IdentityClient = new Identity(target, credentials.createInsecure(), { "grpc.max_reconnect_backoff_ms": 1000 });
        const done = (err: Error | null, ok?: boolean): void => {
          signal.removeEventListener("abort", cancel);
          client.close();
          if (err) reject(new Error(`${method} on ${target}: ${err.message}`));
          else if (ok === false) reject(new Error(`${method} on ${target} answered not ready`));
          else resolve();
        };
        const metadata = new Metadata();
        metadata.set(SELF_CHECK_METADATA, "1");
        const options = { deadline: Date.now() + 30_000 };
        const call =
          method === "Probe"
            ? client.Probe({}, metadata, options, (err, res) => done(err, res?.ready?.value ?? true))
            : client.GetPluginInfo({}, metadata, options, (err) => done(err));
        const cancel = (): void => call.cancel();
        signal.addEventListener("abort", cancel, { once: true });
      }),
  };
}

function loopbackFor(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "::1";
  return host;
}

/** The key source answered its last background probe. */
export function keySourceCheck(monitor: KeySourceMonitor, kind: string): HealthCheck {
  return {
    name: "key-source",
    check: () => {
      const state = monitor.current;
      if (state.ready === true) return Promise.resolve();
      return Promise.reject(new Error(state.ready === undefined ? `${kind} key source not probed yet` : `${kind} key source: ${state.error ?? "not ready"}`));
    },
  };
}
