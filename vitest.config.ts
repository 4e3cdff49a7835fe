import { defineConfig } from "vitest/config";

// Test tiers (DESIGN §8.2). `unit` is pure: no root, no etcd, no network
// namespaces — `npx vitest run --project unit` works on any machine with
// Node. The other tiers share one real etcd, started once by the global
// setup (or given by test/run.sh through PALISADE_TEST_ETCD).
const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    // Namespace and etcd tests are independent (unique names and key
    // prefixes), but the machine has 2 cores: keep parallelism modest.
    maxWorkers: 2,
    pool: "forks",
    projects: [
      { test: { ...shared, name: "unit", include: ["test/unit/**/*.test.ts"] } },
      {
        test: {
          ...shared,
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/dataplane/**/*.test.ts", "test/e2e/**/*.test.ts"],
          globalSetup: ["test/setup/global-etcd.ts"],
        },
      },
    ],
  },
});
