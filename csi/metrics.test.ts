import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CsiMetrics } from "./metrics.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-metrics-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function value(metrics: CsiMetrics, name: string, labels: Record<string, string | number> = {}): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const sample = (metric?.values as { value: number; labels: Record<string, string | number> }[] | undefined)?.find((v) =>
    Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  );
  return sample?.value;
}

describe("CsiMetrics", () => {
  it("counts calls by method and code, and what is in flight", async () => {
    const metrics = new CsiMetrics({ mapperDir: dir });
    const method = "csi.v1.Node/NodeStageVolume";
    expect(await value(metrics, "cloak_csi_requests_in_flight", { method })).toBe(0);
    const first = metrics.callStarted(method);
    const second = metrics.callStarted(method);
    expect(await value(metrics, "cloak_csi_requests_in_flight", { method })).toBe(2);
    first("OK", 1.5);
    second("ABORTED", 0.01);
    expect(await value(metrics, "cloak_csi_requests_in_flight", { method })).toBe(0);
    expect(await value(metrics, "cloak_csi_requests_total", { method, code: "OK" })).toBe(1);
    expect(await value(metrics, "cloak_csi_requests_total", { method, code: "ABORTED" })).toBe(1);
    expect(await value(metrics, "cloak_csi_request_duration_seconds", { method, le: 2.5 })).toBe(2);
    expect(await value(metrics, "cloak_csi_request_duration_seconds", { method, le: 1 })).toBe(1);
  });

  it("counts quarantined records by their store, wherever the path points below records/", async () => {
    const metrics = new CsiMetrics({ mapperDir: dir });
    metrics.recordQuarantined("/var/lib/cloak/volumes/records/volumes/vol-1.json", "invalid JSON");
    metrics.recordQuarantined("/var/lib/cloak/volumes/records/volumes/.quarantine/vol-2.json", "no id");
    metrics.recordQuarantined("/var/lib/cloak/volumes/records/snapshots/snap-1.json", "invalid JSON");
    metrics.recordQuarantined("/elsewhere/x.json", "?");
    expect(await value(metrics, "cloak_csi_records_quarantined_total", { store: "volumes" })).toBe(2);
    expect(await value(metrics, "cloak_csi_records_quarantined_total", { store: "snapshots" })).toBe(1);
    expect(await value(metrics, "cloak_csi_records_quarantined_total", { store: "unknown" })).toBe(1);
  });

  it("counts cloak's mappings as the volumes staged, at scrape time", async () => {
    const metrics = new CsiMetrics({ mapperDir: dir });
    expect(await value(metrics, "cloak_csi_volumes_staged")).toBe(0);
    for (const name of ["cloak-vol-1", "cloak-vol-2", "control", "other-volume"]) await writeFile(join(dir, name), "");
    expect(await value(metrics, "cloak_csi_volumes_staged")).toBe(2);
  });

  it("shows the key source and kubelet registration states", async () => {
    const metrics = new CsiMetrics({ mapperDir: dir });
    metrics.setKeySourceReady(false);
    expect(await value(metrics, "cloak_csi_key_source_ready")).toBe(0);
    metrics.setKeySourceReady(true);
    expect(await value(metrics, "cloak_csi_key_source_ready")).toBe(1);
    metrics.setKubeletRegistration(false, false);
    expect(await value(metrics, "cloak_csi_kubelet_registered")).toBe(0);
    expect(await value(metrics, "cloak_csi_kubelet_registration_reports_total", { registered: "false" })).toBeUndefined();
    metrics.setKubeletRegistration(false, true);
    metrics.setKubeletRegistration(true, true);
    expect(await value(metrics, "cloak_csi_kubelet_registered")).toBe(1);
    expect(await value(metrics, "cloak_csi_kubelet_registration_reports_total", { registered: "false" })).toBe(1);
    expect(await value(metrics, "cloak_csi_kubelet_registration_reports_total", { registered: "true" })).toBe(1);
  });
});
