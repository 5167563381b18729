#!/usr/bin/env node
/**
 * The one executable of the image. Each component registers its entry point here; the image's
 * containers differ only in the first argument (`cloak csi`, `cloak keyservice`, `cloak netd`).
 * Modules load lazily so that, say, netd never loads the CSI proto — and so that a Node too old
 * for them is refused before any of them is imported (lib/version.ts uses Node built-ins only).
 */
import { cloakVersion, unsupportedNode } from "../lib/version.js";

type Entry = { main(argv: string[]): Promise<number> };

const commands: Record<string, { summary: string; load: () => Promise<Entry> }> = {
  csi: { summary: "run the CSI plugin (identity, node and controller services)", load: () => import("../csi/main.js") },
  netd: { summary: "run the WireGuard mesh agent (run | status | rotate-key | cleanup)", load: () => import("../netd/main.js") },
  keyservice: { summary: "run the key service (per-volume keys over mutual TLS)", load: () => import("../keyservice/main.js") },
  keys: { summary: "make and wrap key service files (init | issue | wrap | rewrap)", load: () => import("../keyservice/keys.js") },
};

const HELP = ["help", "--help", "-h"];

function usage(): string {
  const list = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`);
  return `usage: cloak <command> [options]\n       cloak [<command>] --version\n\ncommands:\n${list.join("\n")}\n\n` +
    `\`cloak <command> --help\` describes a command's options.\n`;
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  // Asked for, help goes to stdout and succeeds; after a mistake it goes to stderr and fails.
  if (name !== undefined && HELP.includes(name)) {
    process.stdout.write(usage());
    return 0;
  }
  if (name === "--version" || (name !== undefined && name in commands && rest.includes("--version"))) {
    process.stdout.write(`cloak ${cloakVersion()} (Node.js ${process.version})\n`);
    return 0;
  }
  const command = name === undefined ? undefined : commands[name];
  if (!command) {
    if (name !== undefined) process.stderr.write(`cloak: unknown command ${JSON.stringify(name)}\n\n`);
    process.stderr.write(usage());
    return 2;
  }
  return (await command.load()).main(rest);
}

const tooOld = unsupportedNode(process.versions.node, process.execPath);
if (tooOld) {
  process.stderr.write(`${tooOld}\n`);
  process.exitCode = 1;
} else {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`cloak: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
      // A daemon that failed half way through its start may have left servers listening (the
      // CSI socket before a bad --registration-dir or a taken --health-listen port); they
      // would keep a half-started process alive. A moment for log lines to drain, then exit.
      setTimeout(() => process.exit(1), 500).unref();
    },
  );
}
