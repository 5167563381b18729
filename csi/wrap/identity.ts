import { callDeadline } from "../../lib/deadline.js";
import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import type { IdentityDefinition, IdentityHandlers } from "../../proto/gen/csi/v1/Identity.js";
import type { PluginCapability } from "../../proto/gen/csi/v1/PluginCapability.js";
import type { InnerDriver } from "./inner-driver.js";

/**
 * cloak's Identity service in front of a wrapped driver: cloak's own name and version, and its
 * own checks in Probe, but the capabilities of the plugin as a whole taken from the inner
 * driver — its controller service (which cloak wraps, in the other process: like split
 * drivers, each process describes the whole plugin), topology constraints (the volumes are the
 * inner driver's) and its expansion mode. Group snapshots and the snapshot metadata service
 * are not wrapped, so not advertised.
 */
export function wrapIdentity(
  base: AsyncHandlers<IdentityHandlers>,
  options: { inner: InnerDriver; definition: IdentityDefinition },
): AsyncHandlers<IdentityHandlers> {
  const { inner, definition } = options;
  return {
    ...base,

    async GetPluginCapabilities(_req, { signal, call }) {
      const answer = await inner.call(definition, "GetPluginCapabilities", {}, { signal, deadline: callDeadline(call) });
      const capabilities: PluginCapability[] = [];
      for (const c of answer.capabilities) {
        const service = c.service?.type;
        if (service === "CONTROLLER_SERVICE" || service === "VOLUME_ACCESSIBILITY_CONSTRAINTS") capabilities.push({ service: { type: service } });
        if (c.volume_expansion && c.volume_expansion.type !== "UNKNOWN") capabilities.push({ volume_expansion: { type: c.volume_expansion.type } });
      }
      return { capabilities };
    },

    async Probe(req, context) {
      const own = base.Probe ? await base.Probe(req, context) : { ready: { value: true } };
      if (own.ready?.value === false) return own;
      // An inner driver that is down or not ready makes cloak not ready, not unhealthy: a
      // liveness probe restarting cloak would not bring the inner driver back.
      try {
        const answer = await inner.call(definition, "Probe", {}, { signal: context.signal, deadline: callDeadline(context.call) });
        if (answer.ready?.value === false) {
          context.log.warn({ inner: inner.target }, "inner driver not ready");
          return { ready: { value: false } };
        }
      } catch (err) {
        context.log.warn({ inner: inner.target, err: err instanceof Error ? err.message : String(err) }, "inner driver does not answer Probe");
        return { ready: { value: false } };
      }
      return own;
    },
  };
}
