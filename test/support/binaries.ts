// Runs the real binaries (built into dist/ by `npm run build`, which
// test/run.sh does first).
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../services/runtime/package-root.js";

const root = packageRoot();
export const BIN = {
  controller: join(root, "dist/services/controller/main.js"),
  driver: join(root, "dist/services/driver/main.js"),
  ctl: join(root, "dist/services/cli/main.js"),
  openstack: join(root, "dist/services/openstack/main.js"),
};

export function requireBuild(): void {
  if (!existsSync(BIN.ctl)) throw new Error("dist/ is missing: run `npm run build` (npm test does it)");
}

export async function palisadectl(controller: string, args: string[], input?: string) {
  const r = await execa(process.execPath, [BIN.ctl, "--insecure", "--controller", controller, ...args], { reject: false, input, env: { NO_COLOR: "1" } });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export function startControllerProcess(opts: { etcd: string; listen: string; prefix: string; logFile: string }): ResultPromise {
  return execa(process.execPath, [BIN.controller, "--insecure", "--etcd-endpoints", opts.etcd, "--listen", opts.listen, "--etcd-prefix", opts.prefix], {
    reject: false, stdout: { file: opts.logFile }, stderr: { file: opts.logFile },
  });
}

/** Polls until fn() is truthy (or throws the last error after timeoutMs). */
export async function eventually<T>(fn: () => Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = new Error(`not yet: ${opts.what ?? "condition"}`);
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw last;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

const RUN = process.env.PALISADE_TEST_RUN ?? Math.random().toString(36).slice(2, 6);

/**
 * A unique, short name for this run and test file: "p<run id><tag>". Every
 * namespace, etcd prefix and socket of a test carries one, so cleanup after
 * a crash (test/run.sh) removes exactly this run's namespaces.
 */
export function uniqueName(tag: string): string {
  return `p${RUN}${tag}`.slice(0, 16);
}
