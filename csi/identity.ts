import type { Runner } from "../lib/exec.js";
import { AbortedError, FailedPreconditionError } from "../lib/errors.js";
import type { AsyncHandlers } from "../lib/grpc-handler.js";
import type { IdentityHandlers } from "../proto/gen/csi/v1/Identity.js";
import * as cryptsetup from "./luks/cryptsetup.js";
import * as blkid from "./tools/blkid.js";
import * as mkfs from "./tools/mkfs.js";

export interface IdentityOptions {
  /** The driver name COs register: `csi.cloak.dev` unless configured. */
  readonly name: string;
  readonly version: string;
  /** Whether this process also serves the Controller service. */
  readonly controller: boolean;
  /** Whether volumes are tied to nodes (the local disk source). */
  readonly topology: boolean;
  readonly run: Runner;
}

/**
 * The CSI Identity service. Probe answers whether this process can serve CSI calls at all: it
 * is an error when a tool the plugin cannot work without is missing (an admin must fix the
 * image), and ready otherwise. It does not depend on the key source: the livenessprobe sidecar
 * (which some deployments still run) turns anything but ready into a failed liveness check,
 * and a key service outage would then restart the plugin on every node at once, which cures
 * nothing. The key source's state is readiness (csi/health/), not Probe's.
 */
export function createIdentityService(options: IdentityOptions): AsyncHandlers<IdentityHandlers> {
  const tools = [cryptsetup.version(), blkid.version(), ...mkfs.FILESYSTEMS.map((fs) => mkfs.version(fs))];
  // The image's tools do not change while it runs: once all answered, they are not run again
  // (each probe would otherwise fork four processes, every few seconds, on every node).
  let toolsPresent = false;
  return {
    async GetPluginInfo() {
      return { name: options.name, vendor_version: options.version };
    },

    async GetPluginCapabilities() {
      const services = [
        ...(options.controller ? ["CONTROLLER_SERVICE" as const] : []),
        ...(options.topology ? ["VOLUME_ACCESSIBILITY_CONSTRAINTS" as const] : []),
      ];
      return { capabilities: services.map((type) => ({ service: { type } })) };
    },

    async Probe(_req, { signal }) {
      if (toolsPresent) return { ready: { value: true } };
      const missing: string[] = [];
      await Promise.all(
        tools.map(async (command) => {
          try {
            await options.run(command, { signal });
          } catch {
            missing.push(command.file);
          }
        }),
      );
      // A check the caller cancelled (or whose deadline passed: a loaded node, an emulated CPU)
      // says nothing about the tools; it must not be reported as their absence.
      if (signal.aborted) {
        const why = signal.reason instanceof Error ? signal.reason.message : "the caller cancelled";
        throw new AbortedError(`the tool check stopped before every tool answered (${why}); not a verdict on the tools`);
      }
      if (missing.length > 0) throw new FailedPreconditionError(`required tools are missing or broken: ${missing.sort().join(", ")}`);
      toolsPresent = true;
      return { ready: { value: true } };
    },
  };
}
