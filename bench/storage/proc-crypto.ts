/**
 * /proc/crypto lists the kernel's cipher implementations; the one with the highest priority
 * for an algorithm is what dm-crypt uses. Recording it tells a reader whether the figures came
 * from AES-NI or from a generic C implementation.
 */
export interface CryptoDriver {
  readonly name: string;
  readonly driver: string;
  readonly module: string;
  readonly priority: number;
}

export function parseProcCrypto(text: string): CryptoDriver[] {
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const fields = new Map<string, string>();
      for (const line of block.split("\n")) {
        const match = /^(\w+)\s*:\s*(.*)$/.exec(line);
        if (match?.[1] && match[2] !== undefined) fields.set(match[1], match[2].trim());
      }
      return { name: fields.get("name") ?? "", driver: fields.get("driver") ?? "", module: fields.get("module") ?? "", priority: Number(fields.get("priority") ?? Number.NaN) };
    })
    .filter((entry) => entry.name !== "");
}

/** The implementation the kernel picks for `algorithm` (highest priority), if any is loaded. */
export function preferredDriver(entries: readonly CryptoDriver[], algorithm: string): CryptoDriver | undefined {
  return entries.filter((e) => e.name === algorithm).sort((a, b) => b.priority - a.priority)[0];
}
