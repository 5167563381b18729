import { lstat, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { KubeletRegistration } from "./kubelet-registration.js";

// The registration socket's own upkeep, without kubelet (test/host/csi/registration.test.ts
// runs kubelet's plugin manager against it): a socket that goes away is offered again by the
// readiness check, also after an attempt to offer it failed.

let dir: string;
let registration: KubeletRegistration | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-registration-"));
});

afterEach(async () => {
  await registration?.stop();
  registration = undefined;
  await rm(dir, { recursive: true, force: true });
});

const isSocket = (path: string) => lstat(path).then((s) => s.isSocket(), () => false);

describe("the registration socket", () => {
  it("is offered again by the readiness check once what stood in its way is gone", async () => {
    registration = await KubeletRegistration.start({
      dir,
      driverName: "csi.cloak.dev",
      kubeletEndpoint: "/var/lib/kubelet/plugins/csi.cloak.dev/csi.sock",
      log: createLogger({ component: "test", level: "silent" }),
    });
    const socket = registration.socketPath;
    expect(await isSocket(socket)).toBe(true);

    // The socket vanishes, and so does its directory, a file standing in its place: serving
    // again fails.
    await rm(dir, { recursive: true });
    await writeFile(dir, "");
    await expect(registration.check.check(AbortSignal.timeout(10_000))).rejects.toThrow(/EEXIST|ENOTDIR/);
    expect(await isSocket(socket)).toBe(false);

    // Once the file is gone, the next check serves the socket again.
    await rm(dir);
    await expect(registration.check.check(AbortSignal.timeout(10_000))).rejects.toThrow(/waiting for kubelet to register/);
    expect(await isSocket(socket)).toBe(true);
  });
});
