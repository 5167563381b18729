import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { CommandNotFoundError, ExecError, ExecTimeoutError, createRunner, describeCommand, exitedWith } from "./exec.js";
import { createLogger } from "./log.js";

function capturingRunner() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const logger = createLogger({ component: "test", level: "debug", destination });
  return { run: createRunner({ logger, defaultTimeoutMs: 5_000 }), lines };
}

describe("the runner", () => {
  it("feeds stdin, returns stdout, and logs the argv with secret arguments redacted", async () => {
    const { run, lines } = capturingRunner();
    const result = await run({ file: "sh", args: ["-c", "cat; echo \" $1\"", "sh", "hunter2"], input: "from stdin", secretArgs: [3] });
    expect(result).toEqual({ exitCode: 0, stdout: "from stdin hunter2\n", stderr: "" });
    const logged = lines.join("");
    expect(logged).toContain("<redacted>");
    expect(logged).not.toContain("hunter2");
    expect(logged).not.toContain("from stdin");
  });

  it("passes binary stdin through unchanged", async () => {
    const { run } = capturingRunner();
    const bytes = Buffer.from([0, 1, 2, 10, 13, 255]);
    const result = await run({ file: "od", args: ["-An", "-tx1"], input: bytes });
    expect(result.stdout.trim().split(/\s+/)).toEqual(["00", "01", "02", "0a", "0d", "ff"]);
  });

  it("throws a typed error carrying the exit code and stderr", async () => {
    const { run } = capturingRunner();
    const err = await run({ file: "sh", args: ["-c", "echo broken >&2; exit 3"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect(err).toMatchObject({ exitCode: 3, stderr: "broken\n", argv: "sh -c echo broken >&2; exit 3" });
    expect(exitedWith(err, 3)).toBe(true);
    expect(exitedWith(err, 2)).toBe(false);
  });

  it("treats exit codes the command declares as answers", async () => {
    const { run } = capturingRunner();
    await expect(run({ file: "sh", args: ["-c", "exit 2"], okExitCodes: [2] })).resolves.toMatchObject({ exitCode: 2 });
  });

  it("kills a command at its timeout", async () => {
    const { run } = capturingRunner();
    await expect(run({ file: "sleep", args: ["10"], timeoutMs: 100 })).rejects.toBeInstanceOf(ExecTimeoutError);
  });

  it("kills a command when the caller's signal fires", async () => {
    const { run } = capturingRunner();
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    await expect(run({ file: "sleep", args: ["10"] }, { signal: abort.signal })).rejects.toThrow(/deadline passed/);
  });

  it("says so when the program is not installed", async () => {
    const { run } = capturingRunner();
    await expect(run({ file: "cloak-no-such-program", args: [] })).rejects.toBeInstanceOf(CommandNotFoundError);
  });

  it("describes commands for logs without their secrets", () => {
    expect(describeCommand({ file: "wg", args: ["set", "wg0", "private-key", "/dev/stdin"], secretArgs: [3] })).toBe("wg set wg0 private-key <redacted>");
  });
});
