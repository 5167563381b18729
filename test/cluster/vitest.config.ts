import { defineConfig } from "vitest/config";

// `make test-cluster`: a real cluster (test/cluster/cluster.ts), control plane on this machine
// and each node a VM-tier guest running containerd and kubelet, started once by global-setup.ts
// for every file. A project of its own: nothing else starts guests with kubelet in them.
export default defineConfig({
  cacheDir: process.env["VITEST_CACHE_DIR"] ?? "node_modules/.vite",
  test: {
    name: "cluster",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/cluster/**/*.test.ts"],
    environment: "node",
    globalSetup: ["test/cluster/global-setup.ts"],
    // One cluster shared by every file: files run one after another.
    fileParallelism: false,
    // The nodes' CPUs are emulated (TCG): a pod start takes tens of seconds there.
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
