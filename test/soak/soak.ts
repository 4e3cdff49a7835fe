// The status-path soak: N simulated hosts on real sync streams (each
// acknowledges every revision, as a real driver does) plus closed-loop
// model writers, against one or more real controller processes (replicas)
// on one real etcd. Hosts use the driver's own sync client, so they fail
// over between replicas as drivers do.
//
// Measures what issue #12 is about: etcd revisions per model write, etcd
// database size over time, write throughput and latency with and without
// acknowledgements, convergence time (write acknowledged -> every host's
// status says it applied the revision), and the controller's RSS over time;
// since issue #23: the fan-out of a tag change to every host (write answered
// -> each host received it), convergence after writes stop, each replica's
// RSS and CPU, and a hello storm (one replica killed by PID; its hosts move
// to the others).
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
import { DataplaneSyncServiceClient, InterfaceState, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { startSyncClient, type SyncClient } from "../../services/driver/sync/sync-client.js";
import { pino } from "pino";
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
  /** Controller processes on the one etcd (default 1); hosts get all their addresses. */
  replicas?: number;
  /** Seconds into the acknowledged phase at which replica 0 is killed (SIGKILL, by PID); needs replicas > 1. */
  killReplicaAtS?: number;
  /** Pause between fan-out writes (a tag change every host receives, one at a time); 0: none. Default 1,000 ms. */
  fanoutEveryMs?: number;
  /** Simulated hosts sharing one channel (TCP connection) to a replica; default 25. */
  hostsPerChannel?: number;
  /** Hosts started per second (default: all at once). */
  connectRate?: number;
  /** Seconds for every host to get its first snapshot; default 120 + hosts / 50. */
  connectTimeoutS?: number;
  log?: (line: string) => void;
}

export interface HelloStorm {
  running?: boolean;
  killedPid: number;
  /** performance.now() of the kill. */
  killedAt: number;
  /** Hosts the killed replica served. */
  hostsMoved: number;
  /** The first write started after the kill: every host must receive it. */
  targetRevision?: number;
  /** Kill -> every host has a stream to a live replica (and a snapshot on it). */
  allConnectedMs?: number;
  /** Kill -> every host on a live replica has received targetRevision (it acknowledges at once). */
  allInSyncMs?: number;
  /** Kill -> the status watch (what `palisadectl wait` sees) shows every host in sync at targetRevision. */
  statusInSyncMs?: number;
  /** Hosts not in sync on a live replica 60 s after the kill. */
  hostsLost?: number;
  hostsPerReplicaAfter?: number[];
  /** Why streams ended or were refused from the kill on (the sync clients' warnings, counted). */
  streamsLostOrRefused?: Record<string, number>;
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
  /** Fan-out writes (tag `fan`, reaching every host): per host, write answered (or sent) -> that host received it. */
  fanout: { writes: number; from_ack: ReturnType<typeof summarize>; from_send: ReturnType<typeof summarize>; all_hosts: ReturnType<typeof summarize>; missed: number };
  /** After writes stop: last write answered -> every host received it / the status watch shows it. */
  settle: { hosts_ms?: number; status_ms?: number };
  /** CPU cores used during the phase (CPU seconds per second). */
  cpu_cores: { replicas: number[]; etcd: number; simulator: number };
  /** Complete batches received over all hosts (markers included: every host gets every revision, DESIGN §5.3). */
  host_batches: number;
  /** CPU microseconds per host batch: all replicas together, the simulator, etcd. */
  cpu_per_host_batch: { replicas_us: number; simulator_us: number; etcd_us: number };
  db_size_start_mib: number;
  db_size_end_mib: number;
  /** Per replica, sampled every sampleEveryS; NaN once killed. */
  rss_mib: number[][];
}

export interface SoakResult {
  hosts: number;
  endpoints: number;
  replicas: number;
  /** Seconds until every host had its first snapshot. */
  connect_s: number;
  phases: PhaseResult[];
  throughput_ratio_acks_vs_none?: number;
  /** The largest growth of a surviving replica. */
  rss_growth_mib: number;
  rss_growth_per_replica_mib: number[];
  hello_storm?: HelloStorm;
  /** Why streams ended or were refused while the hosts first connected. */
  connect_streams_lost_or_refused: Record<string, number>;
  db_growth_mib_per_min: number;
}

/** Simulated hosts per shared channel (one TCP connection) to one replica; default 25. */
const HOSTS_PER_CHANNEL = 25;

/** Where each simulated host is and what it last received (arrays indexed by host). */
interface HostTable {
  /** Index of the replica the host's stream is on, -1 while it has none. */
  replica: Int8Array;
  /** Revision of the last complete batch received (0: none yet). */
  revision: Float64Array;
}

/**
 * One simulated host: the driver's own sync client (services/driver/sync/
 * sync-client.ts: random first replica, the next one on loss, jittered
 * backoff 250 ms -> 15 s) on a shared channel; hello, endpoint statuses after
 * each in-sync, and an `applied` for every complete batch that is due, as a
 * real driver acknowledges.
 */
function simulateHost(o: {
  index: number; name: string; controllers: string[]; endpointKeys: string[]; state: { acks: boolean }; table: HostTable;
  channel: (address: string) => { client: DataplaneSyncServiceClient; release(): void };
  onRevision(host: number, rev: number, at: number): void;
}) {
  let inSync = false;
  let acked = 0;
  let contentOnly = false;
  let content = false;
  const client: SyncClient = startSyncClient({
    controllers: o.controllers, logger: countingLogger, channel: o.channel,
    hello: { hostname: o.name, driverVersion: "soak", ipv6: true, iptablesBackend: "nft", features: [...DRIVER_FEATURES] },
    onConnected(address) {
      inSync = false;
      acked = 0;
      content = false;
      o.table.replica[o.index] = o.controllers.indexOf(address);
    },
    onDisconnected() {
      inSync = false;
      o.table.replica[o.index] = -1;
    },
    onBatch(b: SyncResponse) {
      if (b.updates.length > 0) content = true;
      if (b.inSync) {
        inSync = true;
        contentOnly = b.acksForContentOnly;
        for (const k of o.endpointKeys) client.send({ message: { $case: "endpointStatus", value: { endpointKey: k, state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
      }
      if (!inSync || b.partial) return;
      o.table.revision[o.index] = Math.max(o.table.revision[o.index]!, b.revision);
      o.onRevision(o.index, b.revision, performance.now());
      // As a real driver: each revision that brought updates (a snapshot
      // included); each new revision too when the controller asks for that.
      const due = contentOnly ? content : b.revision > acked || content;
      if (o.state.acks && due) {
        content = false;
        acked = Math.max(acked, b.revision);
        client.send({ message: { $case: "applied", value: { revision: b.revision, ok: true, error: "", durationMs: 1, chainsWritten: b.updates.length, ipsetLines: 0 } } });
      }
    },
  });
  return { stop() { client.stop(); } };
}

/**
 * The sync clients' log, reduced to counts of why streams ended or were
 * refused (address and numbers stripped): the hello storm's shape.
 */
const lossReasons = new Map<string, number>();
const countingLogger = pino({ level: "warn" }, {
  write(line: string) {
    const reason = String((JSON.parse(line) as { reason?: string }).reason ?? "?").replace(/^[^ ]+: /, "").replace(/\d+/g, "N").slice(0, 80);
    lossReasons.set(reason, (lossReasons.get(reason) ?? 0) + 1);
  },
});

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? round(Number(m[1]) / 1024, 1) : NaN;
  } catch {
    return NaN; // exited (a killed replica)
  }
}

/** CPU seconds (user + system) a process has used so far; NaN once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
  } catch {
    return NaN;
  }
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? (() => undefined);
  const replicaCount = Math.max(1, o.replicas ?? 1);
  const fanoutEveryMs = o.fanoutEveryMs ?? 1000;
  const dir = mkdtempSync(join(tmpdir(), "palisade-soak-"));
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const etcdClient = new Etcd3({ hosts: [etcd.url] });
  const addresses: string[] = [];
  for (let i = 0; i < replicaCount; i++) addresses.push(`127.0.0.1:${await freePort()}`);
  const prefix = "/palisade-soak";
  const controllers: ResultPromise[] = [];
  const alive = addresses.map(() => true);
  const sims: { stop(): void }[] = [];
  const pools = new Map<string, DataplaneSyncServiceClient[]>(addresses.map((a) => [a, []]));
  const clients = addresses.map((a) => createClients(a));
  const logOf = (i: number) => join(dir, `controller-${i}.log`);
  try {
    for (const [i, address] of addresses.entries()) {
      controllers.push(execa(process.execPath, [
        // PALISADE_SOAK_NODE_ARGS: extra node flags for the controllers (e.g. --cpu-prof --cpu-prof-dir=DIR).
        "--max-semi-space-size=64", ...(process.env.PALISADE_SOAK_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
        join(packageRoot(), "dist/services/controller/main.js"), "--insecure",
        "--etcd-endpoints", etcd.url, "--listen", address, "--etcd-prefix", prefix, "--log-level", "warn",
      ], { reject: false, stdout: { file: logOf(i) }, stderr: { file: logOf(i) } }));
    }
    const pids = controllers.map((c) => c.pid!);
    for (const [r, c] of clients.entries()) {
      // Generous: three controllers start at once on a machine that may be busy.
      const startBy = Date.now() + 90_000;
      for (;;) {
        try { await call(c.policy, c.policy.getRevision, {}, 1000); break; } catch (e) {
          if (Date.now() > startBy || controllers[r]!.exitCode !== null) throw new Error(`controller ${r} did not start: ${(e as Error).message}; log: ${readFileSync(logOf(r), "utf8").slice(-2000)}`);
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    }

    // The model: a few profiles whose tags reference each other, endpoints
    // spread over hosts. Every profile also admits the tag `fan`, whose one
    // member (an endpoint on a host no simulator serves) moves between two
    // addresses: a tag change that reaches every host (the fan-out figure).
    const profiles = 20;
    const docs: unknown[] = [];
    for (let p = 0; p < profiles; p++) {
      docs.push({
        kind: "Profile", id: `p${p}`, tags: [`t${p}`], outbound_rules: [{}],
        inbound_rules: [{ protocol: "tcp", src_tag: `t${(p + 1) % profiles}`, dst_ports: [80 + p] }, { protocol: "tcp", src_tag: "fan", dst_ports: [22] }],
      });
    }
    docs.push({ kind: "Profile", id: "pfan", tags: ["fan"], inbound_rules: [], outbound_rules: [{}] });
    const fanDoc = (n: number) => ({
      kind: "Endpoint", host: "soak-fan", orchestrator: "soak", workload: "fan", id: "e", name: "tapfan", state: "active",
      ipv4_nets: [`198.19.0.${1 + (n % 2)}`], profile_ids: ["pfan"],
    });
    docs.push(fanDoc(0));
    const hostName = (h: number) => `soak-hv${h}`;
    const endpointDoc = (h: number, e: number, extra: boolean) => {
      const n = h * o.endpointsPerHost + e;
      return {
        kind: "Endpoint", host: hostName(h), orchestrator: "soak", workload: `w${n}`, id: "e", name: `tap${n}`, state: "active",
        ipv4_nets: [`198.18.${(n >> 8) & 255}.${n & 255}`], profile_ids: extra ? [`p${n % profiles}`, `p${(n + 7) % profiles}`] : [`p${n % profiles}`],
      };
    };
    for (let h = 0; h < o.hosts; h++) for (let e = 0; e < o.endpointsPerHost; e++) docs.push(endpointDoc(h, e, false));
    /** Applies through replica `prefer`, or the next live one when it does not answer; 60 s at most. */
    const applyDocs = async (raw: unknown[], prefer = 0) => {
      const documents = parseDocuments(raw).map(documentToPb);
      const deadline = Date.now() + 60_000;
      for (let k = prefer; ; k++) {
        const r = k % replicaCount;
        if (!alive[r]) continue;
        try {
          return await call(clients[r]!.policy, clients[r]!.policy.apply, { deletes: [], documents }, 30_000);
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    };
    for (let i = 0; i < docs.length; i += 2000) await applyDocs(docs.slice(i, i + 2000));

    // Hosts.
    const state = { acks: false };
    const table: HostTable = { replica: new Int8Array(o.hosts).fill(-1), revision: new Float64Array(o.hosts) };
    const perChannel = Math.max(1, o.hostsPerChannel ?? HOSTS_PER_CHANNEL);
    /** Hosts h with the same h / perChannel share one channel to each replica. */
    const channelFor = (h: number) => (address: string) => {
      const pool = pools.get(address)!;
      const k = Math.floor(h / perChannel);
      pool[k] ??= new DataplaneSyncServiceClient(address, grpc.credentials.createInsecure(), { ...CLIENT_OPTIONS, "grpc.use_local_subchannel_pool": 1 });
      return { client: pool[k], release: () => undefined };
    };
    // Fan-out: per host, the first complete batch at or past the fan write's
    // revision. Until the write's answer tells the revision, receipts wait in
    // a per-host buffer (the update may reach hosts before the writer).
    let fan: { revision?: number; ackAt: number; sentAt: number; got: Float64Array; remaining: number; early: number[][] } | undefined;
    const counts = { batches: 0 };
    const onRevision = (h: number, rev: number, at: number) => {
      counts.batches++;
      const f = fan;
      if (!f || !Number.isNaN(f.got[h]!)) return;
      if (f.revision === undefined) {
        const b = (f.early[h] ??= []);
        if (b.length < 2000) b.push(rev, at);
      } else if (rev >= f.revision) {
        f.got[h] = at;
        f.remaining--;
      }
    };
    lossReasons.clear();
    const tc = performance.now();
    for (let h = 0; h < o.hosts; h++) {
      // --connect-rate: hosts started per second (default: all at once).
      if (o.connectRate && h > 0 && h % Math.max(1, Math.round(o.connectRate / 10)) === 0) await new Promise((r) => setTimeout(r, 100));
      const keys = Array.from({ length: o.endpointsPerHost }, (_, e) => `${hostName(h)}/soak/w${h * o.endpointsPerHost + e}/e`);
      sims.push(simulateHost({ index: h, name: hostName(h), controllers: addresses, endpointKeys: keys, state, table, channel: channelFor(h), onRevision }));
    }
    const inSyncCount = (rev = 1) => {
      let n = 0;
      for (let h = 0; h < o.hosts; h++) if (table.replica[h]! >= 0 && alive[table.replica[h]!] && table.revision[h]! >= rev) n++;
      return n;
    };
    const perReplica = () => addresses.map((_, r) => table.replica.reduce((n, x) => n + (x === r ? 1 : 0), 0));
    const deadline = Date.now() + (o.connectTimeoutS ?? 120 + o.hosts / 50) * 1000;
    let nextLog = Date.now() + 10_000;
    const cpuNow = () => `cpu-s replicas ${pids.map((p) => round(cpuSeconds(p), 1)).join("/")} etcd ${round(cpuSeconds(etcd.pid), 1)} simulator ${round((process.cpuUsage().user + process.cpuUsage().system) / 1e6, 1)}`;
    while (inSyncCount() < o.hosts) {
      if (Date.now() > deadline) throw new Error(`only ${inSyncCount()}/${o.hosts} hosts got a snapshot; streams lost/refused: ${JSON.stringify([...lossReasons])}`);
      if (Date.now() > nextLog) {
        nextLog += 10_000;
        log(`soak: connecting t=${Math.round((performance.now() - tc) / 1000)}s in sync ${inSyncCount()}/${o.hosts} per replica ${perReplica().join("/")} rss ${pids.map(rssMiB).join("/")}MiB ${cpuNow()}; streams lost/refused: ${JSON.stringify([...lossReasons])}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const connectS = round((performance.now() - tc) / 1000, 1);
    log(`soak: ${o.hosts} hosts x ${o.endpointsPerHost} endpoints connected in ${connectS}s over ${replicaCount} replica(s): ${perReplica().join("/")}; ${cpuNow()}; streams lost/refused: ${JSON.stringify([...lossReasons])}`);
    const connectLosses = Object.fromEntries(lossReasons);
    lossReasons.clear();

    // Status as `palisadectl wait` sees it: the status watch, on the last
    // replica (the first is the one a kill takes down).
    const statusClient = clients[replicaCount - 1]!;
    // Re-opened when it ends: a keepalive drop under load ends it too, and a
    // dead watch would freeze what the soak sees of status.
    const applied = new Map<string, HostStatus>();
    let status: ReturnType<typeof statusClient.status.watchStatus>;
    let watching = true;
    const watch = () => {
      const w = statusClient.status.watchStatus({});
      status = w;
      w.on("data", (m: WatchStatusResponse) => {
        if (m.snapshot) applied.clear();
        for (const h of m.hosts) applied.set(h.hostname, h);
        for (const h of m.removedHosts) applied.delete(h);
      });
      let ended = false;
      const again = () => {
        if (ended) return;
        ended = true;
        if (watching) setTimeout(() => { if (watching) watch(); }, 500);
      };
      w.on("error", again);
      w.on("end", again);
    };
    watch();
    const allApplied = (rev: number) => {
      let n = 0;
      for (const h of applied.values()) {
        if (!h.hostname.startsWith("soak-hv")) continue;
        if (!h.inSync || h.appliedRevision < rev) return false;
        n++;
      }
      return n >= o.hosts;
    };

    const etcdRevision = async () => Number((await etcdClient.kv.range({ key: Buffer.from(`${prefix}/none`) })).header.revision);
    const dbSize = async () => round(Number((await etcdClient.maintenance.status()).dbSize) / 1024 / 1024, 2);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    let toggle = 0;
    let fanToggle = 1;
    let storm: HelloStorm | undefined;
    async function phase(acks: boolean, seconds: number): Promise<PhaseResult> {
      state.acks = acks;
      await sleep(1000);
      const rev0 = await etcdRevision();
      const db0 = await dbSize();
      const t0 = performance.now();
      const end = Date.now() + seconds * 1000;
      const latencies: number[] = [];
      const convergence: number[] = [];
      const fanFromAck: number[] = [];
      const fanFromSend: number[] = [];
      const fanAll: number[] = [];
      let fanMissed = 0;
      let fanWrites = 0;
      let lastAck = { revision: 0, at: 0 };
      const rss: number[][] = pids.map((pid) => [rssMiB(pid)]);
      const cpu0 = { replicas: pids.map(cpuSeconds), etcd: cpuSeconds(etcd.pid), self: process.cpuUsage() };
      const batches0 = counts.batches;
      let nextSample = Date.now() + o.sampleEveryS * 1000;
      let measuring = false;
      let stormRun: Promise<void> | undefined;
      let cpuAtKill = NaN;
      const killAt = acks && o.killReplicaAtS !== undefined && replicaCount > 1 ? Date.now() + o.killReplicaAtS * 1000 : undefined;
      const acked = (revision: number) => {
        if (revision > lastAck.revision) lastAck = { revision, at: performance.now() };
      };
      const sample = async () => {
        if (Date.now() < nextSample) return;
        nextSample += o.sampleEveryS * 1000;
        for (const [r, pid] of pids.entries()) rss[r]!.push(alive[r] ? rssMiB(pid) : NaN);
        log(`soak: acks=${acks} t=${Math.round((performance.now() - t0) / 1000)}s writes=${latencies.length}+${fanWrites} fan-out p99=${summarize(fanFromAck).p99_ms}ms hosts/replica=${perReplica().join("/")} rss=${rss.map((x) => x.at(-1)).join("/")}MiB etcd_db=${await dbSize()}MiB revisions/write=${round((await etcdRevision() - rev0) / Math.max(1, latencies.length + fanWrites))}`);
      };
      const writer = async (w: number) => {
        while (Date.now() < end) {
          const n = toggle++;
          const h = n % o.hosts;
          const e = Math.floor(n / o.hosts) % o.endpointsPerHost;
          const ts = performance.now();
          const r = await applyDocs([endpointDoc(h, e, Math.floor(n / (o.hosts * o.endpointsPerHost)) % 2 === 0)], w);
          latencies.push(performance.now() - ts);
          acked(r.revision);
          if (storm && storm.targetRevision === undefined && ts > storm.killedAt) storm.targetRevision = r.revision;
          // Convergence of one write at a time (sampled), as `wait` would see it.
          if (acks && !measuring && !storm?.running) {
            measuring = true;
            const tw = performance.now();
            void (async () => {
              while (!allApplied(r.revision) && Date.now() < end + 30_000) await sleep(5);
              if (allApplied(r.revision)) convergence.push(performance.now() - tw);
              measuring = false;
            })();
          }
          await sample();
          if (killAt !== undefined && !stormRun && Date.now() >= killAt) stormRun = killReplica();
        }
      };
      // One tag change at a time reaching every host; paused during a hello storm.
      const fanWriter = async () => {
        if (fanoutEveryMs <= 0) return;
        while (Date.now() < end) {
          if (storm?.running) { await sleep(100); continue; }
          const f = { revision: undefined as number | undefined, sentAt: performance.now(), ackAt: NaN, got: new Float64Array(o.hosts).fill(NaN), remaining: o.hosts, early: [] as number[][] };
          fan = f;
          const r = await applyDocs([fanDoc(fanToggle++)], fanWrites);
          f.ackAt = performance.now();
          f.revision = r.revision;
          fanWrites++;
          acked(r.revision);
          for (const [h, b] of f.early.entries()) {
            if (!b) continue;
            for (let i = 0; i < b.length; i += 2) if (b[i]! >= r.revision) { f.got[h] = b[i + 1]!; f.remaining--; break; }
          }
          f.early = [];
          const until = performance.now() + 10_000;
          while (f.remaining > 0 && performance.now() < until && !storm?.running) await sleep(5);
          fan = undefined;
          if (!storm?.running) {
            let last = 0;
            for (let h = 0; h < o.hosts; h++) {
              const t = f.got[h]!;
              if (Number.isNaN(t)) { fanMissed++; continue; }
              fanFromAck.push(Math.max(0, t - f.ackAt));
              fanFromSend.push(t - f.sentAt);
              last = Math.max(last, t);
            }
            if (f.remaining === 0) fanAll.push(Math.max(0, last - f.ackAt));
          }
          await sleep(fanoutEveryMs);
        }
      };
      // Kills replica 0 by its PID, then waits until every host has a stream
      // to a live replica and has received a revision written after the kill.
      const killReplica = async () => {
        const moved = perReplica()[0]!;
        const s: HelloStorm = { running: true, killedAt: performance.now(), killedPid: pids[0]!, hostsMoved: moved };
        storm = s;
        cpuAtKill = cpuSeconds(pids[0]!);
        controllers[0]!.kill("SIGKILL");
        alive[0] = false;
        log(`soak: killed replica 0 (pid ${pids[0]}) serving ${moved} hosts`);
        const until = performance.now() + 60_000;
        for (;;) {
          const now = performance.now();
          if (s.allConnectedMs === undefined && inSyncCount() === o.hosts) s.allConnectedMs = round(now - s.killedAt);
          if (s.targetRevision !== undefined && s.allInSyncMs === undefined && inSyncCount(s.targetRevision) === o.hosts) s.allInSyncMs = round(now - s.killedAt);
          if (s.targetRevision !== undefined && s.statusInSyncMs === undefined && allApplied(s.targetRevision)) s.statusInSyncMs = round(now - s.killedAt);
          if ((s.allInSyncMs !== undefined && s.statusInSyncMs !== undefined) || now > until) break;
          await sleep(20);
        }
        s.hostsLost = o.hosts - inSyncCount(s.targetRevision ?? 1);
        s.hostsPerReplicaAfter = perReplica();
        s.streamsLostOrRefused = Object.fromEntries(lossReasons);
        s.running = false;
        log(`soak: hello storm: ${JSON.stringify({ ...s, running: undefined })}`);
      };
      await Promise.all([...Array.from({ length: o.writers }, (_, w) => writer(w)), fanWriter()]);
      const secs = (performance.now() - t0) / 1000;
      const revs = (await etcdRevision()) - rev0;
      for (const [r, pid] of pids.entries()) rss[r]!.push(alive[r] ? rssMiB(pid) : NaN);
      const cpuUsed = {
        replicas: pids.map((pid, r) => round(((alive[r] ? cpuSeconds(pid) : cpuAtKill) - cpu0.replicas[r]!) / secs)),
        etcd: round((cpuSeconds(etcd.pid) - cpu0.etcd) / secs),
        simulator: (() => { const u = process.cpuUsage(cpu0.self); return round((u.user + u.system) / 1e6 / secs); })(),
      };
      const batches = counts.batches - batches0;
      // CPU per host batch (a marker or an update received by one host): what
      // the fan-out costs whatever else runs on the machine.
      const perBatchUs = (cores: number) => round((cores * secs * 1e6) / Math.max(1, batches), 1);
      const cpuPerBatch = { replicas_us: perBatchUs(cpuUsed.replicas.reduce((a, b) => a + b, 0)), simulator_us: perBatchUs(cpuUsed.simulator), etcd_us: perBatchUs(cpuUsed.etcd) };
      await stormRun;
      // Convergence after writes stop: from the last write's answer until every
      // host received (simulator) / reported (status watch) its revision.
      const settle: { hosts_ms?: number; status_ms?: number } = {};
      const until = performance.now() + 30_000;
      while ((settle.hosts_ms === undefined || (acks && settle.status_ms === undefined)) && performance.now() < until) {
        if (settle.hosts_ms === undefined && inSyncCount(lastAck.revision) === o.hosts) settle.hosts_ms = round(performance.now() - lastAck.at);
        if (acks && settle.status_ms === undefined && allApplied(lastAck.revision)) settle.status_ms = round(performance.now() - lastAck.at);
        await sleep(5);
      }
      return {
        acks, seconds: round(secs, 1), writes: latencies.length + fanWrites, writes_per_s: round((latencies.length + fanWrites) / secs, 1), latency: summarize(latencies),
        etcd_revisions_per_write: round(revs / Math.max(1, latencies.length + fanWrites)), convergence: summarize(convergence),
        fanout: { writes: fanWrites, from_ack: summarize(fanFromAck), from_send: summarize(fanFromSend), all_hosts: summarize(fanAll), missed: fanMissed },
        settle, cpu_cores: cpuUsed, host_batches: batches, cpu_per_host_batch: cpuPerBatch,
        db_size_start_mib: db0, db_size_end_mib: await dbSize(), rss_mib: rss,
      };
    }

    const phases: PhaseResult[] = [];
    if (o.baselineS > 0) phases.push(await phase(false, o.baselineS));
    phases.push(await phase(true, o.durationS));
    watching = false;
    status!.cancel();
    const last = phases.at(-1)!;
    const none = phases.find((p) => !p.acks);
    // RSS growth per replica: last sample against the median of the first
    // third (start-up and snapshots settle first); NaN for a killed replica.
    const growth = last.rss_mib.map((series) => {
      const firstThird = series.slice(0, Math.max(1, Math.ceil(series.length / 3))).sort((a, b) => a - b);
      return round(series.at(-1)! - firstThird[Math.floor(firstThird.length / 2)]!, 1);
    });
    return {
      hosts: o.hosts, endpoints: o.hosts * o.endpointsPerHost, replicas: replicaCount, connect_s: connectS, phases,
      throughput_ratio_acks_vs_none: none ? round(last.writes_per_s / none.writes_per_s) : undefined,
      rss_growth_mib: Math.max(...growth.filter((g) => !Number.isNaN(g))),
      rss_growth_per_replica_mib: growth,
      db_growth_mib_per_min: round((last.db_size_end_mib - last.db_size_start_mib) / (last.seconds / 60)),
      hello_storm: storm && { ...storm, running: undefined }, connect_streams_lost_or_refused: connectLosses,
    };
  } finally {
    for (const s of sims) s.stop();
    for (const pool of pools.values()) for (const c of pool) c?.close();
    for (const c of clients) c.close();
    for (const c of controllers) {
      if (c.exitCode !== null) continue;
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
      await c;
      clearTimeout(t);
    }
    etcdClient.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
