import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { packageRoot } from "../../../lib/paths.js";
import * as blkid from "../../../csi/tools/blkid.js";
import { createKeyDir } from "../../support/key-dir.js";
import { pluginCommand, startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { scrubTree } from "../../support/scrub.js";

// The plugin as kubelet meets it: its own process, a real unix socket, real gRPC.

const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });

let root: string;
let keyDir: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-plugin-"));
  keyDir = await createKeyDir(join(root, "keys"));
});
afterAll(async () => {
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

describe("the plugin's gRPC server", () => {
  let plugin: RunningPlugin | undefined;
  afterEach(async () => {
    await plugin?.stop("SIGKILL");
    plugin = undefined;
  });

  it("answers Identity and Node discovery calls", async () => {
    plugin = await startPlugin({ dir: await mkdtemp(join(root, "p-")), keyDir });
    const { client } = plugin;
    const info = await client.identity("GetPluginInfo", {});
    expect(info.name).toBe("csi.cloak.dev");
    expect(info.vendor_version).toMatch(/^\d+\.\d+\.\d+/);
    const caps = await client.identity("GetPluginCapabilities", {});
    expect(caps.capabilities.map((c) => c.service?.type)).toContain("VOLUME_ACCESSIBILITY_CONSTRAINTS");
    expect((await client.identity("Probe", {})).ready?.value).toBe(true);

    const nodeCaps = await client.node("NodeGetCapabilities", {});
    expect(nodeCaps.capabilities.map((c) => c.rpc?.type).sort()).toEqual(
      ["EXPAND_VOLUME", "GET_VOLUME_STATS", "STAGE_UNSTAGE_VOLUME", "VOLUME_CONDITION"].sort(),
    );
    const nodeInfo = await client.node("NodeGetInfo", {});
    expect(nodeInfo.node_id).toBe("test-node");
    expect(nodeInfo.accessible_topology?.segments).toEqual({ "topology.csi.cloak.dev/node": "test-node" });
  });

  it("honours a configured driver name", async () => {
    plugin = await startPlugin({ dir: await mkdtemp(join(root, "p-")), keyDir, args: ["--driver-name", "encrypted.example.com"] });
    expect((await plugin.client.identity("GetPluginInfo", {})).name).toBe("encrypted.example.com");
  });

  it("replaces a stale socket left by a killed plugin", async () => {
    const dir = await mkdtemp(join(root, "p-"));
    const socket = join(dir, "csi.sock");
    const squatter = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(socket)}, () => console.log("up"))`]);
    await new Promise((resolve) => squatter.stdout.once("data", resolve));
    squatter.kill("SIGKILL");
    await new Promise((resolve) => squatter.once("exit", resolve));
    expect(existsSync(socket)).toBe(true);

    plugin = await startPlugin({ dir, keyDir });
    expect(plugin.logs.some((l) => l["msg"] === "removed stale socket")).toBe(true);
  });

  it("refuses to take over a socket another plugin is serving", async () => {
    const dir = await mkdtemp(join(root, "p-"));
    plugin = await startPlugin({ dir, keyDir });
    const { args } = await pluginCommand({ dir, keyDir });
    const second = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    second.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const code = await new Promise((resolve) => second.once("exit", resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/another process is serving on .*csi\.sock/);
    expect((await plugin.client.identity("Probe", {})).ready?.value).toBe(true);
  });

  it.each(["SIGTERM", "SIGINT"] as const)("drains and exits cleanly on %s, removing its socket", async (signal) => {
    const running = await startPlugin({ dir: await mkdtemp(join(root, "p-")), keyDir });
    const exit = await running.stop(signal);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(existsSync(running.socket)).toBe(false);
    expect(running.logs.some((l) => l["msg"] === "stopping" && l["signal"] === signal)).toBe(true);
  });

  it("refuses to start without a usable key source", async () => {
    const dir = await mkdtemp(join(root, "p-"));
    await expect(startPlugin({ dir, keyDir: join(dir, "no-such-keys") })).rejects.toThrow(/master secret file .* cannot be read/);
  });
});

describe("request validation", () => {
  let plugin: RunningPlugin;
  beforeAll(async () => {
    plugin = await startPlugin({ dir: await mkdtemp(join(root, "v-")), keyDir });
  });
  afterAll(async () => {
    await plugin.stop("SIGKILL");
  });

  const mountCapability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

  it.each([
    ["an empty volume id", "", /volume_id is required/],
    ["a parent-directory volume id", "..", /not a valid volume id/],
    ["an id with a path separator", "a/../../etc", /not a valid volume id/],
    ["an absolute id", "/etc/passwd", /not a valid volume id/],
    ["an id with NUL", "vol\u0000x", /not a valid volume id/],
    ["an over-long id", "v".repeat(129), /longer than 128/],
  ])("refuses %s with InvalidArgument", async (_name, volumeId, message) => {
    const stagingPath = join(plugin.kubeletDir, "staging", "x");
    await expect(
      plugin.client.node("NodeStageVolume", { volume_id: volumeId, staging_target_path: stagingPath, volume_capability: mountCapability }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(message) });
  });

  it.each([
    ["a relative path", "relative/path", /must be absolute/],
    ["a path with ..", "KUBELET/../../etc", /normalised/],
    ["a path outside kubelet's directory", "/etc", /outside the allowed directories/],
    ["a sibling that only shares a prefix", "KUBELET-evil/x", /outside the allowed directories/],
  ])("refuses %s with InvalidArgument", async (_name, path, message) => {
    const stagingPath = path.replace("KUBELET", plugin.kubeletDir);
    await expect(
      plugin.client.node("NodeStageVolume", { volume_id: "vol-1", staging_target_path: stagingPath, volume_capability: mountCapability }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(message) });
  });

  it.each([
    ["no capability", undefined, /volume_capability is required/],
    ["no access type", { access_mode: { mode: "SINGLE_NODE_WRITER" as const } }, /must have an access type/],
    ["an unsupported filesystem", { mount: { fs_type: "ntfs" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } }, /ntfs.*not supported/],
    ["a multi-node mode", { mount: {}, access_mode: { mode: "MULTI_NODE_MULTI_WRITER" as const } }, /MULTI_NODE_MULTI_WRITER is not supported/],
  ])("refuses %s with InvalidArgument", async (_name, capability, message) => {
    await expect(
      plugin.client.node("NodeStageVolume", {
        volume_id: "vol-1",
        staging_target_path: join(plugin.kubeletDir, "staging"),
        ...(capability ? { volume_capability: capability } : {}),
      }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(message) });
  });

  it("refuses a staging path whose parent is a symlink out of the allowed root, before touching the disk", async () => {
    // kubelet's directory holds a symlink (planted by whoever can write there) to a directory
    // outside it: a text check of the path passes, the real path does not.
    const outside = await mkdtemp(join(root, "outside-"));
    await symlink(outside, join(plugin.kubeletDir, "evil"));
    const disk = join(plugin.volumesDir, "vol-symlinked.img");
    await writeFile(disk, "");
    await truncate(disk, 32 * 1024 * 1024);
    await expect(
      plugin.client.node("NodeStageVolume", {
        volume_id: "vol-symlinked",
        staging_target_path: join(plugin.kubeletDir, "evil", "staging"),
        volume_capability: mountCapability,
      }),
    ).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(new RegExp(`leads through a symlink to "${outside}/staging", outside the allowed directories`)),
    });
    await expect(
      plugin.client.node("NodePublishVolume", {
        volume_id: "vol-symlinked",
        staging_target_path: join(plugin.kubeletDir, "staging", "vol-symlinked"),
        target_path: join(plugin.kubeletDir, "evil", "pods", "target"),
        volume_capability: mountCapability,
      }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    // Nothing was formatted, attached or created.
    expect(blkid.parseProbe(await run(blkid.probe(disk)))).toEqual({ kind: "empty" });
    expect(await readdir(outside)).toEqual([]);
    const loops = await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", disk] });
    expect(loops.stdout.trim()).toBe("");
  });

  it("refuses a path through a dangling symlink, which mkdir would follow", async () => {
    await symlink(join(root, "does-not-exist"), join(plugin.kubeletDir, "dangling"));
    await expect(
      plugin.client.node("NodeUnpublishVolume", { volume_id: "vol-1", target_path: join(plugin.kubeletDir, "dangling", "t") }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/dangling symlink/) });
  });

  it("follows a symlink that stays inside the allowed root", async () => {
    await mkdir(join(plugin.kubeletDir, "real-pods"), { recursive: true });
    await symlink(join(plugin.kubeletDir, "real-pods"), join(plugin.kubeletDir, "pods-link"));
    await plugin.client.node("NodeUnpublishVolume", { volume_id: "vol-1", target_path: join(plugin.kubeletDir, "pods-link", "t") });
  });

  it("answers NotFound for a volume that does not exist", async () => {
    await expect(
      plugin.client.node("NodeStageVolume", {
        volume_id: "no-such-volume",
        staging_target_path: join(plugin.kubeletDir, "staging", "x"),
        volume_capability: mountCapability,
      }),
    ).rejects.toMatchObject({ code: status.NOT_FOUND, details: expect.stringMatching(/no-such-volume does not exist/) });
  });

  it("unstages and unpublishes unknown volumes successfully (idempotent no-ops)", async () => {
    await plugin.client.node("NodeUnpublishVolume", { volume_id: "never-seen", target_path: join(plugin.kubeletDir, "pods", "t") });
    await expect(
      plugin.client.node("NodeUnstageVolume", { volume_id: "never-seen", staging_target_path: join(plugin.kubeletDir, "staging", "t") }),
    ).resolves.toEqual({});
  });

  it("answers NotFound for stats of a volume that is not here", async () => {
    await expect(plugin.client.node("NodeGetVolumeStats", { volume_id: "never-seen", volume_path: "some/path" })).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });
});

it("runs from the built tree", () => {
  expect(existsSync(join(packageRoot(), "dist", "cmd", "cloak.js"))).toBe(true);
});
