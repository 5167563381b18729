import { FailedPreconditionError } from "../../lib/errors.js";
import type { KeySource } from "../keys/key-source.js";

/**
 * The key source of a wrapper's controller-only process, which forwards controller calls and
 * never opens a volume: holding no key material (and no client certificate for the key
 * service) is the point.
 */
export const NO_KEYS: KeySource = {
  kind: "none",
  async getKey() {
    throw new FailedPreconditionError("this process serves the controller of a wrapped driver and holds no keys");
  },
  async probe() {},
  async close() {},
};
