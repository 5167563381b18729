import type { ParseArgsOptionsConfig } from "node:util";
import { InvalidArgumentError } from "../../lib/errors.js";

/** The key service's per-node, per-volume authorisation settings (keyservice/README.md). */
export interface AuthzConfig {
  /** "none": the certificate allow-list only; "kubernetes": also a node token and a volume on that node. */
  readonly mode: "none" | "kubernetes";
  readonly kubeconfig: string | undefined;
  /** The audience the node plugin's projected token must be for. */
  readonly audience: string;
  /** `namespace/name` of the node plugin's service account. */
  readonly nodeServiceAccount: string;
  /** CSI drivers whose PVs may carry cloak keys. */
  readonly drivers: readonly string[];
  /** How long a refusal that an informer catching up could turn waits for it. */
  readonly graceMs: number;
}

export const AUTHZ_DEFAULTS = {
  audience: "cloak-keyservice",
  nodeServiceAccount: "cloak-system/cloak-csi-node",
  driver: "csi.cloak.dev",
  graceMs: 2000,
} as const;

/** Options for node:util parseArgs, merged into the key service's own. */
export const AUTHZ_OPTIONS = {
  authorization: { type: "string", default: "none" },
  kubeconfig: { type: "string" },
  "token-audience": { type: "string", default: AUTHZ_DEFAULTS.audience },
  "node-service-account": { type: "string", default: AUTHZ_DEFAULTS.nodeServiceAccount },
  driver: { type: "string", multiple: true, default: [AUTHZ_DEFAULTS.driver] as string[] },
  "authz-grace-ms": { type: "string", default: String(AUTHZ_DEFAULTS.graceMs) },
} satisfies ParseArgsOptionsConfig;

export const AUTHZ_USAGE = `  --authorization MODE     none (default): the allow-list decides; kubernetes: each request must also
                           carry the node plugin's projected token, and the key must belong to a
                           volume meant to be on that node (PVs, claims, pods, VolumeAttachments,
                           CloakKey records watched through the API)
  --kubeconfig FILE        API access for --authorization kubernetes (default $KUBECONFIG, then in-cluster)
  --token-audience NAME    the audience the node's token must be for (default ${AUTHZ_DEFAULTS.audience})
  --node-service-account NS/NAME  the node plugin's service account (default ${AUTHZ_DEFAULTS.nodeServiceAccount})
  --driver NAME            a CSI driver whose volumes carry cloak keys (repeatable; default ${AUTHZ_DEFAULTS.driver})
  --authz-grace-ms N       how long a refusal waits for the caches to catch up (default ${AUTHZ_DEFAULTS.graceMs})
`;

export function parseAuthzFlags(values: {
  authorization: string;
  kubeconfig?: string | undefined;
  "token-audience": string;
  "node-service-account": string;
  driver: string[];
  "authz-grace-ms": string;
}): AuthzConfig {
  const mode = values.authorization;
  if (mode !== "none" && mode !== "kubernetes") throw new InvalidArgumentError(`--authorization takes none or kubernetes, not ${JSON.stringify(mode)}`);
  const sa = values["node-service-account"];
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(sa)) {
    throw new InvalidArgumentError(`--node-service-account must be NAMESPACE/NAME, not ${JSON.stringify(sa)}`);
  }
  if (values["token-audience"] === "") throw new InvalidArgumentError("--token-audience must not be empty");
  const graceMs = Number(values["authz-grace-ms"]);
  if (!Number.isInteger(graceMs) || graceMs < 0) throw new InvalidArgumentError(`--authz-grace-ms must be a whole number ≥ 0`);
  if (mode === "none" && values.kubeconfig !== undefined) throw new InvalidArgumentError("--kubeconfig is only used with --authorization kubernetes");
  return {
    mode,
    kubeconfig: values.kubeconfig,
    audience: values["token-audience"],
    nodeServiceAccount: sa,
    drivers: [...new Set(values.driver)],
    graceMs,
  };
}
