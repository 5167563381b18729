import { defineConfig } from "vitest/config";

// Three tiers, as the Makefile runs them. Unit tests sit beside the code they test and need
// neither root nor a kernel feature; host tests need root and this machine's kernel (loop
// devices, network namespaces, TUN); vm tests need dm-crypt or kernel WireGuard and run inside
// the VM that test/vm/ boots (or natively where the kernel has them).
export default defineConfig({
  // The VM mounts the work tree read-only: nothing may be written beside the sources.
  cacheDir: process.env["VITEST_CACHE_DIR"] ?? "node_modules/.vite",
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["{cmd,csi,keyservice,netd,lib,bench}/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        test: {
          name: "host",
          include: ["test/host/**/*.test.ts"],
          environment: "node",
          // Root-level resources (loop devices, namespaces) are easier to reason about when
          // one file runs at a time; tests inside a file are sequential anyway.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "vm",
          include: ["test/vm/**/*.test.ts"],
          environment: "node",
          fileParallelism: false,
          // The VM emulates its CPU (TCG): everything is slower than on the host.
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
