// A local etcd for the quickstart and the tests: loopback only, free ports,
// its own data dir. Stopped by PID — never anything we did not start.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

export interface EtcdProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

export async function startEtcd(opts: { dataDir: string; name?: string; logFile?: string }): Promise<EtcdProcess> {
  mkdirSync(opts.dataDir, { recursive: true });
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const out = openSync(opts.logFile ?? join(opts.dataDir, "etcd.log"), "a");
  const child: ChildProcess = spawn("etcd", [
    "--name", opts.name ?? "palisade-local",
    "--data-dir", opts.dataDir,
    "--listen-client-urls", url, "--advertise-client-urls", url,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", `${opts.name ?? "palisade-local"}=http://127.0.0.1:${peer}`,
    // One apply of many documents is one transaction (DESIGN §3).
    "--max-txn-ops", "10000", "--max-request-bytes", "33554432",
  ], { stdio: ["ignore", out, out], detached: false });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 20_000;
  while (!(await healthy(url))) {
    if (child.exitCode !== null) throw new Error(`etcd exited with code ${child.exitCode}; see ${opts.logFile ?? join(opts.dataDir, "etcd.log")}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("etcd did not become healthy within 20s");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
