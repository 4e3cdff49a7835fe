// Starts the one real etcd of a test run — the only place tests start the
// shared one (DESIGN §8.2) — unless PALISADE_TEST_ETCD points a developer's
// own at it. Tests isolate themselves with unique key prefixes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startEtcd } from "../lab/etcd-process.js";

declare module "vitest" {
  export interface ProvidedContext {
    etcdUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const given = process.env.PALISADE_TEST_ETCD;
  if (given) {
    project.provide("etcdUrl", given);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "palisade-test-etcd-"));
  const etcd = await startEtcd({ dataDir: dir });
  project.provide("etcdUrl", etcd.url);
  return async () => {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
