import type { Runner } from "../lib/exec.js";
import { FailedPreconditionError } from "../lib/errors.js";
import type { AsyncHandlers } from "../lib/grpc-handler.js";
import type { IdentityHandlers } from "../proto/gen/csi/v1/Identity.js";
import type { KeySource } from "./keys/key-source.js";
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
  readonly keys: KeySource;
}

/**
 * The CSI Identity service. Probe is an error when a tool the plugin cannot work without is
 * missing (restarting will not help, an admin must fix the image), and "not ready" while the
 * key source cannot serve keys (that usually passes: the key service is rolling, say).
 */
export function createIdentityService(options: IdentityOptions): AsyncHandlers<IdentityHandlers> {
  const tools = [cryptsetup.version(), blkid.version(), ...mkfs.FILESYSTEMS.map((fs) => mkfs.version(fs))];
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

    async Probe(_req, { signal, log }) {
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
      if (missing.length > 0) throw new FailedPreconditionError(`required tools are missing or broken: ${missing.sort().join(", ")}`);
      try {
        await options.keys.probe({ signal });
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err), keySource: options.keys.kind }, "key source not ready");
        return { ready: { value: false } };
      }
      return { ready: { value: true } };
    },
  };
}
