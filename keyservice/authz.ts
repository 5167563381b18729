import type { ClientIdentity } from "./identity.js";

/**
 * Who may call GetDataKey: a list of identities or patterns, matched against the URI and DNS
 * names of the client certificate. An entry containing "://" matches URIs, case-sensitively;
 * any other entry matches DNS names, case-insensitively. `*` stands for one or more characters
 * within one segment (no `/` and no `.`), so `spiffe://cloak/ns/cloak-system/sa/*` admits every
 * service account of that namespace and `*.nodes.example` one DNS label, never more.
 */
export interface AllowList {
  readonly entries: readonly string[];
  /** The entry that admits this identity and the name it matched, or undefined. */
  match(identity: ClientIdentity): { entry: string; name: string } | undefined;
}

export function compileAllowList(entries: readonly string[]): AllowList {
  const compiled = entries.map((entry) => {
    checkEntry(entry);
    const isUri = entry.includes("://");
    return { entry, isUri, test: compileEntry(isUri ? entry : entry.toLowerCase()) };
  });
  return {
    entries,
    match(identity) {
      for (const rule of compiled) {
        const names = rule.isUri ? identity.uris : identity.dnsNames;
        for (const name of names) if (rule.test(name)) return { entry: rule.entry, name };
      }
      return undefined;
    },
  };
}

/** Raised for an entry that cannot mean what its author wanted. */
export class AllowListError extends Error {}

function checkEntry(entry: string): void {
  if (entry.trim() !== entry || entry === "") throw new AllowListError(`allow-list entry ${JSON.stringify(entry)} is empty or has surrounding spaces`);
  if (/[\s,]/.test(entry)) throw new AllowListError(`allow-list entry ${JSON.stringify(entry)} contains a space or comma`);
  // A lone "*" or a scheme-wide wildcard would admit every certificate the CA ever signed:
  // that is what mutual TLS without authorisation already means, so say it explicitly instead.
  if (/^\*+$/.test(entry) || /^[a-z][a-z0-9+.-]*:\/\/\*$/i.test(entry)) {
    throw new AllowListError(`allow-list entry ${JSON.stringify(entry)} admits everyone; name the identities`);
  }
}

function compileEntry(entry: string): (name: string) => boolean {
  if (!entry.includes("*")) return (name) => name === entry;
  const source = entry
    .split("*")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"))
    .join("[^/.]+");
  const re = new RegExp(`^${source}$`);
  return (name) => re.test(name);
}

/** An allow-list file: one entry per line; blank lines and `#` comments are ignored. */
export function parseAllowListFile(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line !== "");
}
