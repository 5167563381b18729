#!/usr/bin/env node
/**
 * The one executable of the image. Each component registers its entry point here; the image's
 * containers differ only in the first argument (`cloak csi`, `cloak keyservice`, `cloak netd`).
 * Modules load lazily so that, say, netd never loads the CSI proto.
 */
type Entry = { main(argv: string[]): Promise<number> };

const commands: Record<string, { summary: string; load: () => Promise<Entry> }> = {
  csi: { summary: "run the CSI plugin (identity, node and controller services)", load: () => import("../csi/main.js") },
  netd: { summary: "run the WireGuard mesh agent (run | status | rotate-key | cleanup)", load: () => import("../netd/main.js") },
  keyservice: { summary: "run the key service (per-volume keys over mutual TLS)", load: () => import("../keyservice/main.js") },
  keys: { summary: "make key service files: cloak keys init <dir> | issue <dir>", load: () => import("../keyservice/keys.js") },
};

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = name === undefined ? undefined : commands[name];
  if (!command) {
    const list = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`);
    process.stderr.write(`usage: cloak <command> [options]\n\ncommands:\n${list.join("\n")}\n`);
    return name === undefined || name === "help" || name === "--help" ? 0 : 2;
  }
  return (await command.load()).main(rest);
}

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`cloak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
