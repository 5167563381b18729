import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { packageRoot } from "../../../lib/paths.js";

// `cloak keys init` makes the master secret and salt every volume's key derives from: a crash
// (power loss) right after it must not leave them empty or missing while the admin has already
// copied them into a Secret and started making volumes. The real command runs under strace,
// which shows the syscalls themselves: each file's content fsynced under a temporary name,
// renamed into place, and the directory fsynced after the rename (without which the rename
// itself may be lost).

const run = createRunner({ logger: createLogger({ component: "test", level: "warn" }) });
let root: string;
let dir: string;
let trace: string[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-keys-fsync-"));
  dir = join(root, "keys");
  const traceFile = join(root, "trace");
  await run({
    file: "strace",
    // -f: Node's file system calls run on libuv's worker threads; -y: paths of descriptors.
    args: ["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", traceFile, process.execPath, join(packageRoot(), "dist/cmd/cloak.js"), "keys", "init", dir],
    timeoutMs: 120_000,
  });
  trace = (await readFile(traceFile, "utf8")).split("\n");
}, 180_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Line numbers of the trace's successful calls matching `re`. */
function calls(re: RegExp): number[] {
  return trace.flatMap((line, i) => (re.test(line) && / = 0$/.test(line) ? [i] : []));
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("cloak keys init", () => {
  it.each(["master-secret", "salt", "ca/ca.key"])("fsyncs %s, renames it into place, then fsyncs its directory", (name) => {
    const path = join(dir, name);
    const parent = path.slice(0, path.lastIndexOf("/"));
    const onto = new RegExp(`rename(?:at2?)?\\([^"]*"([^"]+)",[^"]*"${escape(path)}"`);
    const renames = calls(onto);
    expect(renames, `one rename onto ${path} in:\n${trace.join("\n")}`).toHaveLength(1);
    const renamed = renames[0] ?? -1;
    const tmpName = onto.exec(trace[renamed] ?? "")?.[1] ?? "";
    const fileSyncs = calls(new RegExp(`f(data)?sync\\(\\d+<${escape(tmpName)}>\\)`));
    expect(fileSyncs.filter((i) => i < renamed), `an fsync of ${tmpName} before its rename`).not.toHaveLength(0);
    const dirSyncs = calls(new RegExp(`fsync\\(\\d+<${escape(parent)}>\\)`));
    expect(dirSyncs.filter((i) => i > renamed), `an fsync of ${parent} after the rename`).not.toHaveLength(0);
  });
});
