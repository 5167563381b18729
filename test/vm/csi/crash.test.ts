import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writesWithin } from "../../support/frozen.js";
import { CsiFixture, MiB, mapperExists, mountCapability, run } from "./fixture.js";

// The plugin killed (SIGKILL, as by a node crash or an OOM kill) at every step boundary of a
// stage, an unstage, an integrity wipe and a copy, restarted, and the call retried as kubelet
// or a sidecar would: the retry must finish the job without formatting again and without
// losing data. Data written before every crash — on a neighbour volume staged the whole time,
// and on the volumes being restaged or copied — is read back after each retry.
//
// One plugin process carries every failpoint (each scoped to its test's volume, each firing
// once), so each crash costs one restart.

const fx = new CsiFixture();

const FRESH_STEPS = [
  "stage:after-attach",
  "stage:mid-format",
  "stage:after-format",
  "stage:after-open",
  "stage:after-mkfs",
  "stage:after-label",
  "stage:after-mount",
] as const;
const IN_USE_STEPS = ["stage:after-attach", "stage:after-open", "stage:after-mount"] as const;
const freshId = (step: string): string => `vol-crash-${step.replace("stage:", "")}`;
const inUseId = (step: string): string => `vol-crash-in-use-${step.replace("stage:", "")}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const marker = (what: string): string => `${what}-${randomBytes(12).toString("hex")}`;
const neighbour = { id: "vol-crash-neighbour", target: "", data: marker("neighbour") };
const inUseData = new Map<string, string>();
const integrity = { mount: mountCapability(), context: { integrity: "true", fsType: "ext4" } };
/** Controller volumes, mounted and holding data, that the copy tests copy. */
const copySources = { clone: { id: "", target: "", data: marker("clone-source") }, snapshot: { id: "", target: "", data: marker("snapshot-source") } };

async function createVolume(name: string, bytes: number, source?: object): Promise<string> {
  const { volume } = await fx.plugin.client.controller("CreateVolume", {
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [mountCapability()],
    ...(source ? { volume_content_source: source } : {}),
  });
  return volume!.volume_id;
}

async function expectKilled(call: Promise<unknown>): Promise<void> {
  const killed = fx.plugin.exited;
  await expect(call).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect((await killed).signal).toBe("SIGKILL");
}

async function expectNeighbourIntact(): Promise<void> {
  expect(await readFile(join(neighbour.target, "data"), "utf8")).toBe(neighbour.data);
}

beforeAll(async () => {
  await fx.setUp();
  // Everything that must hold data before the first crash, made by a plugin with no failpoints.
  await fx.newVolume(neighbour.id);
  await fx.stage(neighbour.id);
  neighbour.target = await fx.publish(neighbour.id);
  await writeFile(join(neighbour.target, "data"), neighbour.data);
  for (const step of IN_USE_STEPS) {
    const id = inUseId(step);
    await fx.newVolume(id);
    await fx.stage(id);
    const data = marker(id);
    await writeFile(join(await fx.publish(id), "data"), data);
    inUseData.set(id, data);
    await fx.unpublish(id);
    await fx.unstage(id);
  }
  await fx.newVolume("vol-crash-unstage");
  await fx.stage("vol-crash-unstage");
  inUseData.set("vol-crash-unstage", marker("unstage"));
  await writeFile(join(await fx.publish("vol-crash-unstage"), "data"), inUseData.get("vol-crash-unstage")!);
  await fx.unpublish("vol-crash-unstage");
  for (const [name, source] of Object.entries(copySources)) {
    source.id = await createVolume(`pvc-${name}-source`, 64 * MiB);
    await fx.stage(source.id);
    source.target = await fx.publish(source.id);
    await writeFile(join(source.target, "data"), source.data);
  }
  await run({ file: "sync", args: [] });

  await fx.restart({
    failpoints: [
      ...FRESH_STEPS.map((step) => `${step}@${freshId(step)}`),
      ...IN_USE_STEPS.map((step) => `${step}@${inUseId(step)}`),
      "unstage:after-close@vol-crash-unstage",
      "stage:mid-wipe@vol-crash-wipe",
      `copy:mid-copy@${copySources.clone.id}`,
      `copy:mid-freeze@${copySources.snapshot.id}`,
    ],
  });
}, 1_200_000);
afterAll(() => fx.tearDown());

describe.each(FRESH_STEPS)("a first stage killed at %s", (step) => {
  it("completes on retry with the same LUKS header, a working filesystem, and nothing lost", async () => {
    const id = freshId(step);
    await fx.newVolume(id);
    await expectKilled(fx.stage(id));
    const uuidAfterCrash = await fx.luksUuid(id);
    // Killed before the format, the disk is untouched; from the format on, it has its header.
    if (step === "stage:after-attach") expect(uuidAfterCrash).toBeUndefined();
    else expect(uuidAfterCrash).toMatch(UUID);

    await fx.restart();
    await fx.stage(id);
    const uuid = await fx.luksUuid(id);
    expect(uuid).toMatch(UUID);
    if (uuidAfterCrash !== undefined) expect(uuid).toBe(uuidAfterCrash);
    const target = await fx.publish(id);
    await writeFile(join(target, "after-crash"), step);
    expect(await readFile(join(target, "after-crash"), "utf8")).toBe(step);
    await fx.unpublish(id);
    await fx.unstage(id);
    await expectNeighbourIntact();
  });
});

describe.each(IN_USE_STEPS)("a stage of a volume in use killed at %s", (step) => {
  it("completes on retry with the volume's data intact", async () => {
    const id = inUseId(step);
    await expectKilled(fx.stage(id));
    await fx.restart();
    await fx.stage(id);
    expect(await readFile(join(await fx.publish(id), "data"), "utf8")).toBe(inUseData.get(id));
    await fx.unpublish(id);
    await fx.unstage(id);
    await expectNeighbourIntact();
  });
});

describe("an unstage killed after closing the mapping", () => {
  it("completes on retry, and the volume comes back with its data", async () => {
    const id = "vol-crash-unstage";
    await expectKilled(fx.unstage(id));
    expect(mapperExists(id)).toBe(false);
    await fx.restart();
    await fx.unstage(id);
    await fx.stage(id);
    expect(await readFile(join(await fx.publish(id), "data"), "utf8")).toBe(inUseData.get(id));
    await fx.unpublish(id);
    await fx.unstage(id);
    await expectNeighbourIntact();
  });
});

describe("an integrity stage killed mid-wipe", () => {
  it("resumes the wipe where its label says it stopped, and every sector's tag is then valid", async () => {
    const id = "vol-crash-wipe";
    await fx.newVolume(id, 112 * MiB);
    await expectKilled(fx.stage(id, integrity.mount, integrity.context));
    const label = await run({ file: "blkid", args: ["-p", "-s", "LABEL", "-o", "value", fx.volumeFile(id)] });
    expect(label.stdout.trim()).toBe(`wiping:${32 * MiB}`);

    await fx.restart();
    await fx.stage(id, integrity.mount, integrity.context);
    expect(fx.plugin.logs.find((l) => l["msg"] === "resuming the integrity wipe")).toMatchObject({ wipedBytes: 32 * MiB });
    const target = await fx.publish(id);
    await writeFile(join(target, "data"), "authenticated after a crash");
    await run({ file: "sync", args: [] });
    // A sector whose tag was never written fails to read (EILSEQ): read every one.
    await run({ file: "dd", args: [`if=/dev/mapper/cloak-${id}`, "of=/dev/null", "bs=1M", "iflag=direct", "status=none"] });
    expect(await readFile(join(target, "data"), "utf8")).toBe("authenticated after a crash");
    await fx.unpublish(id);
    await fx.unstage(id);
    await expectNeighbourIntact();
  });
});

describe("a clone killed mid-copy", () => {
  it("thaws its source at restart and completes on retry with the source's data", async () => {
    const source = copySources.clone;
    // The source is mounted: the copy freezes it, and the kill comes while it is frozen.
    const clone = fx.plugin.client.controller("CreateVolume", {
      name: "pvc-crash-clone",
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [mountCapability()],
      volume_content_source: { volume: { volume_id: source.id } },
    });
    await expectKilled(clone);
    await fx.restart();
    expect(fx.logged("thawed a filesystem an interrupted copy left frozen")).toBe(true);
    expect(await writesWithin(join(source.target, "written-after-the-crash"), 30_000)).toBe(true);

    const id = await createVolume("pvc-crash-clone", 64 * MiB, { volume: { volume_id: source.id } });
    await fx.stage(id);
    expect(await readFile(join(await fx.publish(id), "data"), "utf8")).toBe(source.data);
    expect(await readFile(join(source.target, "data"), "utf8")).toBe(source.data);
    await fx.unpublish(id);
    await fx.unstage(id);
    await expectNeighbourIntact();
  });
});

describe("a snapshot killed while its source is frozen", () => {
  it("thaws the source at restart, and the retried snapshot restores the data", async () => {
    const source = copySources.snapshot;
    await expectKilled(fx.plugin.client.controller("CreateSnapshot", { name: "snap-crash", source_volume_id: source.id }));
    await fx.restart();
    expect(await writesWithin(join(source.target, "written-after-the-crash"), 30_000)).toBe(true);

    const { snapshot } = await fx.plugin.client.controller("CreateSnapshot", { name: "snap-crash", source_volume_id: source.id });
    expect(snapshot?.ready_to_use).toBe(true);
    const restored = await createVolume("pvc-crash-restored", 64 * MiB, { snapshot: { snapshot_id: snapshot!.snapshot_id } });
    await fx.stage(restored);
    expect(await readFile(join(await fx.publish(restored), "data"), "utf8")).toBe(source.data);
    await fx.unpublish(restored);
    await fx.unstage(restored);
    await expectNeighbourIntact();
  });
});

describe("concurrent stages of one volume", () => {
  it("let one through and turn the other away with Aborted", async () => {
    const id = "vol-concurrent";
    await fx.newVolume(id);
    const results = await Promise.allSettled([fx.stage(id), fx.stage(id)]);
    const codes = results.map((r) => (r.status === "fulfilled" ? status.OK : (r.reason as { code: number }).code)).sort();
    expect(codes).toEqual([status.OK, status.ABORTED].sort());
    await fx.stage(id);
    await fx.unstage(id);
  });
});

describe("the neighbour, staged before the first crash", () => {
  it("comes back with its data after every crash and a full unstage and stage", async () => {
    await expectNeighbourIntact();
    await fx.unpublish(neighbour.id);
    await fx.unstage(neighbour.id);
    await fx.stage(neighbour.id);
    neighbour.target = await fx.publish(neighbour.id);
    await expectNeighbourIntact();
    for (const source of Object.values(copySources)) expect(await readFile(join(source.target, "data"), "utf8")).toBe(source.data);
  });
});
