import { defineConfig } from "vitest/config";

// `make test-deploy`: the manifests, RBAC, admission policy, image contents and real CSI sidecars
// against one real kube-apiserver (test/apiserver) that global-setup.ts starts for all files.
// A project of its own, so that `make test-host` does not run these a second time.
export default defineConfig({
  cacheDir: process.env["VITEST_CACHE_DIR"] ?? "node_modules/.vite",
  test: {
    name: "deploy",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/deploy/**/*.test.ts"],
    environment: "node",
    globalSetup: ["test/deploy/global-setup.ts"],
    // One API server shared by every file: files run one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
