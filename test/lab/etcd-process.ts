// A local etcd for the quickstart and the tests: loopback only, free ports,
// its own data dir. Stopped by PID — never anything we did not start.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { join } from "node:path";

export interface EtcdProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
  /** Still running (not stopped, not exited). */
  alive(): boolean;
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

async function healthy(url: string, tls?: EtcdServerTls): Promise<boolean> {
  if (tls) {
    // fetch() cannot present a client certificate; https.get can.
    return new Promise((resolve) => {
      const req = httpsGet(`${url}/health`, {
        ca: readFileSync(tls.ca), cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey), timeout: 1000,
      }, (res) => { res.resume(); resolve(res.statusCode === 200); });
      req.on("error", () => resolve(false));
      req.on("timeout", () => { req.destroy(); resolve(false); });
    });
  }
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

/** Client-facing TLS for a lab etcd: its server certificate, and clients must present one signed by `ca`. */
export interface EtcdServerTls {
  cert: string;
  key: string;
  ca: string;
  /** Used only for the health check while starting. */
  clientCert: string;
  clientKey: string;
}

/**
 * Limits a test may lower to exercise Palisade's handling of them (the
 * defaults are generous: one apply of many documents is one transaction).
 */
export interface EtcdLimits {
  /** etcd's --max-txn-ops (default here 10000; etcd's own default is 128). */
  maxTxnOps?: number;
  /** etcd's --quota-backend-bytes (default: etcd's, 2 GiB). */
  quotaBackendBytes?: number;
}

function limitArgs(l: EtcdLimits): string[] {
  return [
    "--max-txn-ops", String(l.maxTxnOps ?? 10000), "--max-request-bytes", "33554432",
    ...(l.quotaBackendBytes ? ["--quota-backend-bytes", String(l.quotaBackendBytes)] : []),
  ];
}

export async function startEtcd(opts: { dataDir: string; name?: string; logFile?: string; tls?: EtcdServerTls } & EtcdLimits): Promise<EtcdProcess> {
  mkdirSync(opts.dataDir, { recursive: true });
  const [client, peer] = [await freePort(), await freePort()];
  const url = `${opts.tls ? "https" : "http"}://127.0.0.1:${client}`;
  const tlsArgs = opts.tls
    ? ["--cert-file", opts.tls.cert, "--key-file", opts.tls.key, "--trusted-ca-file", opts.tls.ca, "--client-cert-auth"]
    : [];
  const out = openSync(opts.logFile ?? join(opts.dataDir, "etcd.log"), "a");
  const child: ChildProcess = spawn("etcd", [
    "--name", opts.name ?? "palisade-local",
    "--data-dir", opts.dataDir,
    "--listen-client-urls", url, "--advertise-client-urls", url,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", `${opts.name ?? "palisade-local"}=http://127.0.0.1:${peer}`,
    // One apply of many documents is one transaction (DESIGN §3.5).
    ...limitArgs(opts),
    ...tlsArgs,
  ], { stdio: ["ignore", out, out], detached: false });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 20_000;
  while (!(await healthy(url, opts.tls))) {
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
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A local etcd cluster of `members` members on loopback (each stoppable by PID). */
export async function startEtcdCluster(opts: { dataDir: string; members: number; name?: string } & EtcdLimits): Promise<{ urls: string[]; members: EtcdProcess[]; stop(): Promise<void> }> {
  const base = opts.name ?? "palisade-ha";
  const ports = await Promise.all(Array.from({ length: opts.members }, async () => ({ client: await freePort(), peer: await freePort() })));
  const initial = ports.map((p, i) => `${base}${i}=http://127.0.0.1:${p.peer}`).join(",");
  const members: EtcdProcess[] = [];
  const starting = ports.map((p, i) => {
    const url = `http://127.0.0.1:${p.client}`;
    const dir = join(opts.dataDir, `m${i}`);
    mkdirSync(dir, { recursive: true });
    const out = openSync(join(dir, "etcd.log"), "a");
    const child = spawn("etcd", [
      "--name", `${base}${i}`, "--data-dir", dir,
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", `http://127.0.0.1:${p.peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${p.peer}`,
      "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", `${base}-${process.pid}`,
      ...limitArgs(opts),
    ], { stdio: ["ignore", out, out] });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    members.push({
      url, pid: child.pid!,
      alive: () => child.exitCode === null && child.signalCode === null,
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGKILL");
        await exited;
      },
    });
    return url;
  });
  const deadline = Date.now() + 30_000;
  for (const url of starting) {
    while (!(await healthy(url))) {
      if (Date.now() > deadline) {
        await Promise.all(members.map((m) => m.stop()));
        throw new Error("etcd cluster did not become healthy within 30s");
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { urls: starting, members, stop: async () => { await Promise.all(members.map((m) => m.stop())); } };
}
