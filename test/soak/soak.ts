// The status-path soak: N simulated hosts on real sync streams (each
// acknowledges every revision, as a real driver does) plus a closed-loop
// model writer, against a real controller process on a real etcd.
//
// Measures what issue #12 is about: etcd revisions per model write, etcd
// database size over time, write throughput and latency with and without
// acknowledgements, convergence time (write acknowledged -> every host's
// status says it applied the revision), and the controller's RSS over time.
// Used by `npm run soak` (long, printed) and by a short CI test with bounds.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { execa, type ResultPromise } from "execa";
import { Etcd3 } from "etcd3";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { CLIENT_OPTIONS } from "../../services/contract/clients.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import type { HostStatus, WatchStatusResponse } from "../../services/gen/palisade/status/v1/status.js";
import { DataplaneSyncServiceClient, InterfaceState, type SyncRequest, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { freePort, startEtcd } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { round, summarize } from "../bench/stats.js";

export interface SoakOptions {
  hosts: number;
  endpointsPerHost: number;
  /** Seconds of writing with acknowledgements on. */
  durationS: number;
  /** Seconds of writing with acknowledgements off first (0: skip); gives the throughput ratio. */
  baselineS: number;
  /** Model writes in flight at once (closed loop). */
  writers: number;
  /** Sample interval for RSS / etcd size lines. */
  sampleEveryS: number;
  log?: (line: string) => void;
}

export interface PhaseResult {
  acks: boolean;
  seconds: number;
  writes: number;
  writes_per_s: number;
  latency: ReturnType<typeof summarize>;
  etcd_revisions_per_write: number;
  /** Write acknowledged -> every host reported (status) it applied it; sampled writes. */
  convergence: ReturnType<typeof summarize>;
  db_size_start_mib: number;
  db_size_end_mib: number;
  rss_mib: number[];
}

export interface SoakResult {
  hosts: number;
  endpoints: number;
  phases: PhaseResult[];
  throughput_ratio_acks_vs_none?: number;
  rss_growth_mib: number;
  db_growth_mib_per_min: number;
}

const SIM_PER_CHANNEL = 25;

/**
 * One simulated host: hello, then an `applied` for every complete batch
 * (like a real driver); refused or dropped, it reconnects with backoff.
 */
function simulateHost(client: DataplaneSyncServiceClient, name: string, endpointKeys: string[], state: { acks: boolean }, onRevision: (host: string, rev: number) => void) {
  let stopped = false;
  let current: grpc.ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  let attempt = 0;
  const connect = () => {
    if (stopped) return;
    const stream = client.sync();
    current = stream;
    let inSync = false;
    let acked = 0;
    let contentOnly = false;
    let content = false;
    stream.on("data", (b: SyncResponse) => {
      if (b.updates.length > 0) content = true;
      if (b.inSync) {
        inSync = true;
        contentOnly = b.acksForContentOnly;
        attempt = 0;
        for (const k of endpointKeys) stream.write({ message: { $case: "endpointStatus", value: { endpointKey: k, state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
      }
      if (!inSync || b.partial) return;
      onRevision(name, b.revision);
      // As a real driver: each revision that brought updates (a snapshot
      // included); each new revision too when the controller asks for that.
      const due = contentOnly ? content : b.revision > acked || content;
      if (state.acks && due) {
        content = false;
        acked = Math.max(acked, b.revision);
        stream.write({ message: { $case: "applied", value: { revision: b.revision, ok: true, error: "", durationMs: 1, chainsWritten: b.updates.length, ipsetLines: 0 } } });
      }
    });
    stream.on("error", () => {
      if (stopped) return;
      const cap = Math.min(5_000, 250 * 2 ** attempt++);
      setTimeout(connect, cap / 2 + Math.random() * cap / 2);
    });
    stream.write({ message: { $case: "hello", value: { hostname: name, driverVersion: "soak", ipv6: true, iptablesBackend: "nft", features: [...DRIVER_FEATURES] } } });
  };
  connect();
  return { stop() { stopped = true; current?.cancel(); } };
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? round(Number(m[1]) / 1024, 1) : NaN;
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), "palisade-soak-"));
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const etcdClient = new Etcd3({ hosts: [etcd.url] });
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const prefix = "/palisade-soak";
  let controller: ResultPromise | undefined;
  const sims: { stop(): void }[] = [];
  const channels: DataplaneSyncServiceClient[] = [];
  const clients = createClients(address);
  try {
    controller = execa(process.execPath, [
      // PALISADE_SOAK_NODE_ARGS: extra node flags for the controller (e.g. --cpu-prof --cpu-prof-dir=DIR).
      "--max-semi-space-size=64", ...(process.env.PALISADE_SOAK_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      join(packageRoot(), "dist/services/controller/main.js"), "--insecure",
      "--etcd-endpoints", etcd.url, "--listen", address, "--etcd-prefix", prefix, "--log-level", "warn",
    ], { reject: false, stdout: { file: join(dir, "controller.log") }, stderr: { file: join(dir, "controller.log") } });
    const controllerPid = controller.pid!;
    for (let i = 0; ; i++) {
      try { await call(clients.policy, clients.policy.getRevision, {}, 1000); break; } catch (e) {
        if (i > 100 || controller.exitCode !== null) throw new Error(`controller did not start: ${(e as Error).message}; log: ${readFileSync(join(dir, "controller.log"), "utf8").slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    // The model: a few profiles whose tags reference each other, endpoints spread over hosts.
    const profiles = 20;
    const docs: unknown[] = [];
    for (let p = 0; p < profiles; p++) docs.push({ kind: "Profile", id: `p${p}`, tags: [`t${p}`], inbound_rules: [{ protocol: "tcp", src_tag: `t${(p + 1) % profiles}`, dst_ports: [80 + p] }], outbound_rules: [{}] });
    const hostName = (h: number) => `soak-hv${h}`;
    const endpointDoc = (h: number, e: number, extra: boolean) => {
      const n = h * o.endpointsPerHost + e;
      return {
        kind: "Endpoint", host: hostName(h), orchestrator: "soak", workload: `w${n}`, id: "e", name: `tap${n}`, state: "active",
        ipv4_nets: [`198.18.${(n >> 8) & 255}.${n & 255}`], profile_ids: extra ? [`p${n % profiles}`, `p${(n + 7) % profiles}`] : [`p${n % profiles}`],
      };
    };
    for (let h = 0; h < o.hosts; h++) for (let e = 0; e < o.endpointsPerHost; e++) docs.push(endpointDoc(h, e, false));
    const applyDocs = (raw: unknown[]) => call(clients.policy, clients.policy.apply, { deletes: [], documents: parseDocuments(raw).map(documentToPb) }, 60_000);
    for (let i = 0; i < docs.length; i += 2000) await applyDocs(docs.slice(i, i + 2000));

    // Hosts.
    const state = { acks: false };
    const delivered = new Map<string, number>();
    for (let h = 0; h < o.hosts; h++) {
      if (h % SIM_PER_CHANNEL === 0) channels.push(new DataplaneSyncServiceClient(address, grpc.credentials.createInsecure(), { ...CLIENT_OPTIONS, "grpc.use_local_subchannel_pool": 1 }));
      const keys = Array.from({ length: o.endpointsPerHost }, (_, e) => `${hostName(h)}/soak/w${h * o.endpointsPerHost + e}/e`);
      sims.push(simulateHost(channels.at(-1)!, hostName(h), keys, state, (host, rev) => delivered.set(host, Math.max(delivered.get(host) ?? 0, rev))));
    }
    const deadline = Date.now() + 120_000;
    while (delivered.size < o.hosts) {
      if (Date.now() > deadline) throw new Error(`only ${delivered.size}/${o.hosts} hosts got a snapshot`);
      await new Promise((r) => setTimeout(r, 100));
    }
    log(`soak: ${o.hosts} hosts x ${o.endpointsPerHost} endpoints connected`);

    // Status as `palisadectl wait` sees it: the status watch.
    const applied = new Map<string, HostStatus>();
    const status = clients.status.watchStatus({});
    status.on("data", (m: WatchStatusResponse) => {
      if (m.snapshot) applied.clear();
      for (const h of m.hosts) applied.set(h.hostname, h);
      for (const h of m.removedHosts) applied.delete(h);
    });
    status.on("error", () => undefined);
    const allApplied = (rev: number) => {
      if (applied.size < o.hosts) return false;
      for (const h of applied.values()) if (!h.inSync || h.appliedRevision < rev) return false;
      return true;
    };

    const etcdRevision = async () => Number((await etcdClient.kv.range({ key: Buffer.from(`${prefix}/none`) })).header.revision);
    const dbSize = async () => round(Number((await etcdClient.maintenance.status()).dbSize) / 1024 / 1024, 2);

    let toggle = 0;
    async function phase(acks: boolean, seconds: number): Promise<PhaseResult> {
      state.acks = acks;
      await new Promise((r) => setTimeout(r, 1000));
      const rev0 = await etcdRevision();
      const db0 = await dbSize();
      const t0 = performance.now();
      const end = Date.now() + seconds * 1000;
      const latencies: number[] = [];
      const convergence: number[] = [];
      const rss: number[] = [rssMiB(controllerPid)];
      let nextSample = Date.now() + o.sampleEveryS * 1000;
      let measuring = false;
      const writer = async () => {
        while (Date.now() < end) {
          const n = toggle++;
          const h = n % o.hosts;
          const e = Math.floor(n / o.hosts) % o.endpointsPerHost;
          const ts = performance.now();
          const r = await applyDocs([endpointDoc(h, e, Math.floor(n / (o.hosts * o.endpointsPerHost)) % 2 === 0)]);
          latencies.push(performance.now() - ts);
          // Convergence of one write at a time (sampled), as `wait` would see it.
          if (acks && !measuring) {
            measuring = true;
            const tw = performance.now();
            void (async () => {
              while (!allApplied(r.revision) && Date.now() < end + 30_000) await new Promise((res) => setTimeout(res, 5));
              if (allApplied(r.revision)) convergence.push(performance.now() - tw);
              measuring = false;
            })();
          }
          if (Date.now() >= nextSample) {
            nextSample += o.sampleEveryS * 1000;
            rss.push(rssMiB(controllerPid));
            log(`soak: acks=${acks} t=${Math.round((performance.now() - t0) / 1000)}s writes=${latencies.length} rss=${rss.at(-1)}MiB etcd_db=${await dbSize()}MiB revisions/write=${round((await etcdRevision() - rev0) / Math.max(1, latencies.length))}`);
          }
        }
      };
      await Promise.all(Array.from({ length: o.writers }, writer));
      const secs = (performance.now() - t0) / 1000;
      const revs = (await etcdRevision()) - rev0;
      rss.push(rssMiB(controllerPid));
      return {
        acks, seconds: round(secs, 1), writes: latencies.length, writes_per_s: round(latencies.length / secs, 1), latency: summarize(latencies),
        etcd_revisions_per_write: round(revs / Math.max(1, latencies.length)), convergence: summarize(convergence),
        db_size_start_mib: db0, db_size_end_mib: await dbSize(), rss_mib: rss,
      };
    }

    const phases: PhaseResult[] = [];
    if (o.baselineS > 0) phases.push(await phase(false, o.baselineS));
    phases.push(await phase(true, o.durationS));
    status.cancel();
    const last = phases.at(-1)!;
    const none = phases.find((p) => !p.acks);
    // RSS growth: last sample against the median of the first third (start-up and snapshots settle first).
    const firstThird = [...last.rss_mib.slice(0, Math.max(1, Math.ceil(last.rss_mib.length / 3)))].sort((a, b) => a - b);
    return {
      hosts: o.hosts, endpoints: o.hosts * o.endpointsPerHost, phases,
      throughput_ratio_acks_vs_none: none ? round(last.writes_per_s / none.writes_per_s) : undefined,
      rss_growth_mib: round(last.rss_mib.at(-1)! - firstThird[Math.floor(firstThird.length / 2)]!, 1),
      db_growth_mib_per_min: round((last.db_size_end_mib - last.db_size_start_mib) / (last.seconds / 60)),
    };
  } finally {
    for (const s of sims) s.stop();
    for (const c of channels) c.close();
    clients.close();
    if (controller && controller.exitCode === null) {
      controller.kill("SIGTERM");
      const t = setTimeout(() => controller?.kill("SIGKILL"), 10_000);
      await controller;
      clearTimeout(t);
    }
    etcdClient.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
