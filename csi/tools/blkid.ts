import type { Command, CommandResult } from "../../lib/exec.js";

/** blkid's statuses for low-level probing (blkid(8)): 2 = nothing found, 8 = ambivalent. */
const NOTHING_FOUND = 2;
const AMBIVALENT = 8;

/**
 * Low-level probing (`-p`) reads the device itself: no blkid cache and no udev database,
 * neither of which exists in a container or in cloak's VM tier. Deciding "is it empty?" from
 * udev-fed tools is how other drivers have reformatted volumes full of data.
 */
export function probe(device: string): Command {
  return { file: "blkid", args: ["-p", "-o", "export", device], okExitCodes: [NOTHING_FOUND, AMBIVALENT] };
}

export function version(): Command {
  return { file: "blkid", args: ["--version"], timeoutMs: 10_000 };
}

export type ProbeResult =
  | { readonly kind: "empty" }
  | { readonly kind: "ambivalent" }
  | { readonly kind: "found"; readonly fields: Readonly<Record<string, string>> };

export function parseProbe(result: CommandResult): ProbeResult {
  if (result.exitCode === NOTHING_FOUND) return { kind: "empty" };
  if (result.exitCode === AMBIVALENT) return { kind: "ambivalent" };
  const fields: Record<string, string> = {};
  for (const line of result.stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return { kind: "found", fields };
}

/** A human description of a signature, for refusals: "ext4 filesystem (UUID ...)". */
export function describeSignature(fields: Readonly<Record<string, string>>): string {
  const what = fields["TYPE"] ?? (fields["PTTYPE"] ? `${fields["PTTYPE"]} partition table` : "an unknown signature");
  const usage = fields["USAGE"] ? ` ${fields["USAGE"]}` : "";
  const uuid = fields["UUID"] ?? fields["PTUUID"];
  return `${what}${fields["TYPE"] ? usage : ""}${uuid ? ` (UUID ${uuid})` : ""}`;
}
