import { status as GrpcStatus } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { Command, CommandResult, Runner } from "../lib/exec.js";
import { createLogger } from "../lib/log.js";
import type { CallContext } from "../lib/grpc-handler.js";
import { createIdentityService } from "./identity.js";

// Probe's verdict logic with a stand-in runner: the tools themselves are run for real by the
// host tier (csi-sanity's Probe) and the cluster tier (the node plugin's startup).

const ok: CommandResult = { stdout: "", stderr: "", exitCode: 0 };

function probeWith(run: Runner) {
  const identity = createIdentityService({ name: "csi.cloak.dev", version: "0", controller: false, topology: false, run });
  const probe = identity.Probe;
  if (!probe) throw new Error("Identity serves no Probe");
  return (signal: AbortSignal) => probe({}, { signal, log: createLogger({ component: "test", level: "silent" }) } as unknown as CallContext);
}

describe("Identity Probe", () => {
  it("names the tools that failed, as FailedPrecondition", async () => {
    const probe = probeWith(async (c: Command) => {
      if (c.file === "cryptsetup") throw new Error("not found");
      return ok;
    });
    await expect(probe(new AbortController().signal)).rejects.toMatchObject({ code: GrpcStatus.FAILED_PRECONDITION, message: expect.stringMatching(/missing or broken: cryptsetup$/) });
  });

  it("a check stopped by its caller is not reported as missing tools, and a later check still runs them", async () => {
    const abort = new AbortController();
    let calls = 0;
    // Until the first check is stopped, every tool hangs (as under a loaded node) and dies
    // with its caller's signal, as lib/exec kills a process.
    const probe = probeWith(async (_c, options) => {
      calls++;
      const signal = options?.signal;
      if (!signal || abort.signal.aborted) return ok;
      await new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("killed")), { once: true }));
      return ok;
    });
    const stopped = probe(abort.signal);
    abort.abort(new Error("Probe: deadline exceeded"));
    await expect(stopped).rejects.toMatchObject({ code: GrpcStatus.ABORTED, message: expect.stringMatching(/stopped before every tool answered \(Probe: deadline exceeded\)/) });
    await expect(stopped).rejects.not.toMatchObject({ message: expect.stringMatching(/missing/) });
    const before = calls;
    await expect(probe(new AbortController().signal)).resolves.toEqual({ ready: { value: true } });
    expect(calls).toBeGreaterThan(before);
  });
});
