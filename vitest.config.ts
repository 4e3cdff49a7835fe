import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/global-etcd.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Namespace and etcd tests are independent (unique names and key
    // prefixes), but the machine has 2 cores: keep parallelism modest.
    maxWorkers: 2,
    pool: "forks",
  },
});
