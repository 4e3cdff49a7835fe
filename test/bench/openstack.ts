// openstack: palisade-openstack watch against a real Neutron (Debian's
// neutron-server, test/lab/neutron-process.ts, with filter_validation =
// false so that both change feeds can be measured on one server), a real
// controller and etcd, and a real driver in a namespace for hv1.
//
// - latency: a rule created (or a port changed) through Neutron's API →
//   written (the controller's revision moves) → enforced (hv1's driver
//   reports that revision applied), p50/p99, per feed, at the larger size.
// - idle poll: what one poll costs when nothing changed (requests, bytes,
//   time), measured in-process with the adapter's own client and watcher,
//   at two cloud sizes: the revisions feed grows with the cloud, the
//   changed_since feed does not.
// - full resync: list everything, translate, reconcile (nothing to write),
//   at the larger size.
// - ml2 notices (issue #22 item 2): the same cloud (the database copied at
//   each size) under Neutron's default configuration (filter_validation =
//   true) with the Palisade ML2 mechanism driver loaded, the watch with
//   --ml2-listen and --interval 60: a change enforced sooner than that was
//   made by Neutron's change notice (which names what changed: the poll it
//   wakes fetches those objects by id; reads per change are reported). The same samples, timed from the API
//   call's return, against the issue's 500 ms p99 target (reported, not
//   asserted); and the idle cost at both sizes: polls, requests to Neutron
//   and from neutron-server's pollers, CPU of the adapter and neutron-server.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { call, createClients } from "../../services/contract/clients.js";
import { startController } from "../../services/controller/controller.js";
import type { WatchStatusResponse } from "../../services/gen/palisade/status/v1/status.js";
import { createNeutronClient } from "../../services/openstack/neutron-client.js";
import { syncOnce } from "../../services/openstack/sync.js";
import { translate } from "../../services/openstack/translate.js";
import { createWatcher, type ChangeFeed } from "../../services/openstack/watch.js";
import { createLogger } from "../../services/runtime/logger.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import { startEtcd } from "../lab/etcd-process.js";
import { createLab } from "../lab/lab.js";
import { freePort } from "../lab/etcd-process.js";
import { backupNeutronDb, NeutronAdmin, neutronInstalled, startNeutron, type NeutronProcess } from "../lab/neutron-process.js";
import { orAbort } from "./deadline.js";
import { round, summarize } from "./stats.js";

const readLog = (file: string) => { try { return readFileSync(file, "utf8"); } catch { return ""; } };
const tail = (file: string) => readLog(file).split("\n").slice(-15).join("\n") || "(empty)";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** CPU time (user + system) of a process, or of every process in a process group, so far, in ms. */
function cpuMs(o: { pid?: number; pgid?: number }): number {
  let ticks = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${d}/stat`, "utf8"); } catch { continue; }
    // After "(comm)": state ppid pgrp … utime (14th field) stime (15th).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(d) === o.pid || Number(f[2]) === o.pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

/** A Prometheus text page's samples whose name starts with `prefix`, summed. */
const metric = (page: string, prefix: string) => page.split("\n").filter((l) => l.startsWith(prefix)).reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);

/** polls: idle polls timed per size and feed (default 10). ml2IdleS: the ML2 case's idle window per size (default 65 s: one poll of its --interval 60). */
export async function benchOpenstack(opts: { sizes: [number, number]; samples: number; polls?: number; ml2IdleS?: number; signal?: AbortSignal }) {
  if (!neutronInstalled()) return { skipped: "neutron-server not installed (deploy/dev/ensure-neutron.sh)" };
  const dir = mkdtempSync(join(tmpdir(), "palisade-bench-os-"));
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const socket = join(dir, "ctl.sock");
  const controller = await startController({ etcdEndpoints: [etcd.url], listen: `127.0.0.1:0,unix:${socket}`, logger: createLogger({ name: "bench", level: "silent" }) });
  const clients = createClients(`127.0.0.1:${controller.port}`);
  const neutron = await startNeutron({ filterValidation: false });
  const api = new NeutronAdmin(neutron.url);
  const lab = createLab(`po${process.pid.toString(36)}-`);
  const out: Record<string, unknown> = {};
  let watch: ResultPromise | undefined;
  let ml2Neutron: NeutronProcess | undefined;
  /** The cloud's database at each size (backupNeutronDb), for the ML2 case's servers. */
  const dbAt = new Map<number, string>();
  try {
    const hv = await lab.addHypervisor("hv1");
    lab.spawnIn(hv.ns, process.execPath, [join(packageRoot(), "dist/services/driver/main.js"), "--insecure", "--controller", `unix:${socket}`, "--hostname", "hv1"], { logFile: join(dir, "driver.log") });

    const net = await api.network("bench", "10.64.0.0/16");
    const groups: Json[] = [];
    for (let i = 0; i < 10; i++) {
      const g = await api.group(`g${i}`);
      await api.rule(g.id, { protocol: "tcp", port_range_min: 80 + i, port_range_max: 80 + i, remote_group_id: g.id });
      groups.push(g);
    }
    let made = 0;
    /**
     * Ports one by one (a bulk POST with bindings fails with HTTP 500 on this
     * SQLite-backed Neutron): 1 in 20 on hv1, the rest on ten hosts without a driver.
     */
    const grow = async (to: number) => {
      for (; made < to; made++) {
        const i = made;
        // This Neutron (SQLite, one API worker, its own periodic workers) now and then answers 500: try again.
        for (let attempt = 1; ; attempt++) {
          try {
            await api.port({ network_id: net.id, device_id: `vm-${i}`, "binding:host_id": i % 20 === 0 ? "hv1" : `hv-${2 + (i % 10)}`, security_groups: [groups[i % 10]!.id] });
            break;
          } catch (e) {
            if (attempt >= 3 || !/HTTP 500/.test(String(e))) throw e;
          }
        }
      }
    };

    // Idle-poll cost, in-process, at both sizes and with both feeds.
    const idle = async (feed: ChangeFeed) => {
      const client = createNeutronClient({ url: neutron.url, auth: { kind: "token", token: "noauth" } });
      const w = createWatcher({ neutron: client, feed, resyncMs: 3_600_000, deletionCheckMs: 3_600_000 });
      await w.poll();
      await new Promise((r) => setTimeout(r, 1_100));
      const times: number[] = [];
      const before = client.stats();
      const polls = opts.polls ?? 10;
      for (let i = 0; i < polls; i++) {
        const t0 = performance.now();
        const r = await w.poll();
        times.push(performance.now() - t0);
        if (r.kind !== "idle") throw new Error(`bench: expected an idle poll, got ${r.kind}`);
      }
      const after = client.stats();
      const s = summarize(times);
      return { requests: (after.requests - before.requests) / polls, bytes: Math.round((after.bytes - before.bytes) / polls), p50_ms: s.p50_ms, p99_ms: s.p99_ms };
    };
    for (const size of opts.sizes) {
      await grow(size);
      dbAt.set(size, join(dir, `neutron-${size}.db`));
      await backupNeutronDb(neutron, dbAt.get(size)!);
      for (const feed of ["revisions", "changed-since"] as const) {
        const r = await idle(feed);
        out[`idle_${feed.replace("-", "_")}_${size}_ports`] = `${r.requests} req, ${r.bytes} B, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`;
      }
    }

    // Full resync at the larger size: list, translate, reconcile (the first one writes; the second is timed).
    {
      const client = createNeutronClient({ url: neutron.url, auth: { kind: "token", token: "noauth" } });
      const w = createWatcher({ neutron: client, feed: "revisions", resyncMs: 0, deletionCheckMs: 0 });
      const once = async () => syncOnce(clients.policy, translate((await w.poll()).input(), { onProblem: "leave-out" }), { allowMassDelete: true });
      await once();
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await once();
        if (r.transactions !== 0) throw new Error("bench: a resync of an unchanged cloud wrote something");
        times.push(performance.now() - t0);
      }
      out[`full_resync_${opts.sizes[1]}_ports_ms`] = round(Math.min(...times), 0);
    }

    // Latency through the real watch process.
    let applied = 0;
    let waiter: { rev: number; resolve: () => void } | undefined;
    const stream = clients.status.watchStatus({});
    stream.on("data", (m: WatchStatusResponse) => {
      for (const h of m.hosts) if (h.hostname === "hv1" && h.inSync) applied = Math.max(applied, h.appliedRevision);
      if (waiter && applied >= waiter.rev) waiter.resolve();
    });
    stream.on("error", () => undefined);
    const appliedAt = (rev: number) => orAbort(new Promise<void>((resolve) => {
      if (applied >= rev) return resolve();
      waiter = { rev, resolve };
    }), opts.signal, () => `waiting for hv1 to report revision ${rev} applied (applied so far: ${applied})`);
    const watchLog = (label: string) => join(dir, `watch-${label}.log`);
    const revision = async () => (await call(clients.policy, clients.policy.getRevision, {})).revision;
    const hv1Port = (await api.listAll("ports", "?binding:host_id=hv1&fields=id&limit=1")).ports[0].id as string;
    let portFlips = 0;
    const startWatch = async (label: string, neutronUrl: string, args: string[]) => {
      watch = execa(process.execPath, [join(packageRoot(), "dist/services/openstack/main.js"), "--insecure", "--controller", `unix:${socket}`, "watch",
        "--neutron-url", neutronUrl, "--allow-mass-delete", ...args], { reject: false, env: { OS_TOKEN: "noauth", PALISADE_LOG_LEVEL: "debug" }, stdout: "ignore", stderr: { file: watchLog(label) } });
      // Wait for its first full sync (its summary, "synced: …" or "in sync:
      // nothing to write", carries "unchanged"; on a loaded machine the sync
      // can take longer than any fixed wait, and a change made while it
      // lists is another measurement).
      while (!/"unchanged":\d+/.test(readLog(watchLog(label)))) {
        if (opts.signal?.aborted) throw new Error(`aborted while waiting for palisade-openstack (${label}) to finish its first sync; its log ends:\n${tail(watchLog(label))}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const stopWatch = async () => {
      watch?.kill("SIGTERM");
      await watch;
      watch = undefined;
    };
    /** Samples of a change made through `change`: when the controller's revision moved (written) and hv1 applied it (enforced), from the call's start, and the call itself. */
    const measure = async (label: string, change: (i: number) => Promise<unknown>) => {
      const written: number[] = [];
      const enforced: number[] = [];
      const calls: number[] = [];
      // Wall clock, for lining samples up with the logs (breakdown below).
      const returnedAt: number[] = [];
      const enforcedAt: number[] = [];
      for (let i = 0; i < opts.samples; i++) {
        const rev0 = await revision();
        // Spread the changes over the poll cycle.
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 1_000));
        const t0 = performance.now();
        await change(i);
        calls.push(performance.now() - t0);
        returnedAt.push(Date.now());
        let rev = rev0;
        while (rev === rev0) {
          if (opts.signal?.aborted) throw new Error(`aborted while waiting for palisade-openstack (${label}) to write change ${i + 1} (revision still ${rev0}); its log ends:\n${tail(watchLog(label))}`);
          await new Promise((r) => setTimeout(r, 10));
          rev = await revision();
        }
        written.push(performance.now() - t0);
        await appliedAt(rev);
        enforced.push(performance.now() - t0);
        enforcedAt.push(Date.now());
      }
      return { written, enforced, calls, returnedAt, enforcedAt };
    };
    const format = (m: { written: number[]; enforced: number[] }) => {
      const w = summarize(m.written), e = summarize(m.enforced);
      return `written p50 ${w.p50_ms} / p99 ${w.p99_ms} ms, enforced p50 ${e.p50_ms} / p99 ${e.p99_ms} ms (${w.samples})`;
    };
    for (const feed of ["revisions", "changed-since"] as const) {
      await startWatch(feed, neutron.url, ["--interval", "1", "--change-feed", feed]);
      // And one idle poll.
      await new Promise((r) => setTimeout(r, 1_500));
      const key = feed.replace("-", "_");
      out[`rule_change_${key}`] = format(await measure(feed, (i) => api.rule(groups[0]!.id, { protocol: "tcp", port_range_min: 10_000 + i + (feed === "revisions" ? 0 : 1000), port_range_max: 10_000 + i + (feed === "revisions" ? 0 : 1000) })));
      // Alternates over all cases' samples: with an odd count per case, a
      // per-case alternation would start the next case with the group the
      // port already has (nothing to write, waited on for good).
      out[`port_change_${key}`] = format(await measure(feed, () => api.updatePort(hv1Port, { security_groups: [groups[(portFlips++ % 2) + 1]!.id] })));
      await stopWatch();
    }

    // ML2 notices: the same cloud, copied at each size, under Neutron's
    // default configuration with the Palisade ML2 driver loaded.
    await neutron.stop();
    const INTERVAL_S = 60;
    const idleS = opts.ml2IdleS ?? INTERVAL_S + 5;
    out.ml2_notices_setup = `filter_validation = true (Neutron's default), the Palisade ML2 driver loaded, watch --ml2-listen --interval ${INTERVAL_S}: its own polls are ${INTERVAL_S} s apart, so a change enforced sooner was made by Neutron's change notice; the driver's poll_interval 0.5 s (its default)`;
    for (const size of opts.sizes) {
      const label = `ml2-${size}`;
      const ml2Listen = `127.0.0.1:${await freePort()}`;
      const metricsAt = `127.0.0.1:${await freePort()}`;
      // The driver's own poll_interval (0.5 s), not the tests' 0.2 s: it sets the idle cost of its pollers.
      ml2Neutron = await startNeutron({ palisadeAdapterUrl: `http://${ml2Listen}`, palisadePollInterval: 0.5, database: dbAt.get(size)! });
      const n2 = ml2Neutron;
      const ml2Api = new NeutronAdmin(n2.url);
      await startWatch(label, n2.url, ["--interval", String(INTERVAL_S), "--ml2-listen", ml2Listen, "--metrics-listen", metricsAt]);
      const watchPid = watch!.pid!;
      const scrape = async () => (await fetch(`http://${metricsAt}/metrics`)).text();
      // Settled: no poll and no notice for 3 s (at most 30 s).
      for (let last = "", quiet = 0, t = 0; quiet < 3 && t < 30; t++) {
        const page = await scrape();
        const now = `${metric(page, "palisade_openstack_polls_total")}/${metric(page, "palisade_openstack_ml2_change_notices_total")}`;
        quiet = now === last ? quiet + 1 : 0;
        last = now;
        await new Promise((r) => setTimeout(r, 1_000));
      }
      // Idle: counters, Neutron's request log and CPU over the window.
      const snap = async () => ({
        page: await scrape(), logAt: statSync(n2.logFile).size, adapterCpu: cpuMs({ pid: watchPid }), neutronCpu: cpuMs({ pgid: n2.pid }), at: performance.now(),
      });
      const a = await snap();
      await orAbort(new Promise((r) => setTimeout(r, idleS * 1000)), opts.signal, () => `the ML2 case's idle window at ${size} ports`);
      const b = await snap();
      const secs = (b.at - a.at) / 1000;
      const perMin = (x: number) => round((x * 60) / secs, 1);
      const diff = (prefix: string) => metric(b.page, prefix) - metric(a.page, prefix);
      // Neutron logs every API request: `"GET /v2.0/… HTTP/1.1" status: 200  len: N time: T`.
      const requests = readFileSync(n2.logFile, "utf8").slice(a.logAt).split("\n").map((l) => / "(?:GET|POST|PUT|DELETE) \/v2\.0\/.* len: (\d+)/.exec(l)).filter((m) => m !== null);
      const bytes = requests.reduce((n, m) => n + Number(m![1]), 0);
      const routes = ["/v1/ports/transitions", "/v1/ports/status", "/v1/hosts", "/v1/changes"].map((r) => `${r.slice(4)} ${diff(`palisade_openstack_ml2_requests_total{route="${r}"}`)}`).join(", ");
      out[`idle_ml2_notices_${size}_ports`] = `per minute: ${perMin(diff("palisade_openstack_polls_total"))} polls, ${perMin(requests.length)} requests and ${round(perMin(bytes) / 1024, 1)} KB to Neutron, ${perMin(diff("palisade_openstack_ml2_requests_total"))} requests from neutron-server to the adapter; CPU ${perMin(b.adapterCpu - a.adapterCpu)} ms/min adapter, ${perMin(b.neutronCpu - a.neutronCpu)} ms/min neutron-server (over ${round(secs, 0)} s: ${diff("palisade_openstack_polls_total")} polls, ${diff("palisade_openstack_ml2_change_notices_total")} notices; ${routes})`;
      if (size === opts.sizes[1]) {
        const before = await scrape();
        const ml2Format = (m: { written: number[]; enforced: number[]; calls: number[] }) => {
          // From the call's return: what Palisade adds to Neutron's own API latency.
          const r = { written: m.written.map((x, i) => x - m.calls[i]!), enforced: m.enforced.map((x, i) => x - m.calls[i]!) };
          const c = summarize(m.calls), p99 = summarize(r.enforced).p99_ms;
          return `${format(r)} from the API call's return (the call: p50 ${c.p50_ms} / p99 ${c.p99_ms} ms); target p99 500 ms: ${p99 <= 500 ? "met" : "not met"}`;
        };
        /**
         * Where each sample's time went, from the call's return, lined up
         * with the logs: until the poll's first request to Neutron (the
         * notice and the nudge); the poll (Neutron's listings and fetches;
         * of it, Neutron's own time for the ports' revisions listing); the
         * translation and write (the watch's "Neutron changed" to its sync
         * summary); the host's apply and report. Samples the logs do not
         * line up with are left out.
         */
        const breakdown = (m: { returnedAt: number[]; enforcedAt: number[]; calls: number[] }) => {
          const adapter = readLog(watchLog(label)).split("\n").flatMap((l) => { try { return [JSON.parse(l) as Json]; } catch { return []; } });
          const pollEnds = adapter.filter((j) => j.msg === "Neutron changed").map((j) => j.time as number);
          const syncEnds = adapter.filter((j) => /^(synced|in sync)/.test(String(j.msg))).map((j) => j.time as number);
          // Neutron logs each request when answered: `2026-12-06 05:12:45.090 … "GET /v2.0/… HTTP/1.1" status: 200  len: N time: SECONDS`.
          const requests = readLog(n2.logFile).split("\n").flatMap((l) => {
            const r = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d+) .*"GET \/v2\.0\/([^" ]+) HTTP\/1\.1" status: \d+ +len: \d+ time: ([\d.]+)/.exec(l);
            if (!r) return [];
            const end = new Date(`${r[1]}T${r[2]}`).getTime();
            return [{ path: r[3]!, start: end - Number(r[4]) * 1000, end }];
          });
          const parts = { notice: [] as number[], poll: [] as number[], portsListing: [] as number[], sync: [] as number[], apply: [] as number[] };
          m.returnedAt.forEach((back, i) => {
            // This change's poll: the first to end after the call began (a notice is sent once the change is committed, during the call).
            const callStart = back - m.calls[i]!;
            const pollEnd = pollEnds.find((t) => t > callStart && t <= m.enforcedAt[i]!);
            const syncEnd = pollEnd === undefined ? undefined : syncEnds.find((t) => t >= pollEnd);
            // The poll's first request: the first one to start after the call began and after the previous poll ended.
            const prevEnd = Math.max(callStart, ...pollEnds.filter((t) => t < (pollEnd ?? 0)));
            const first = requests.filter((r) => r.start >= prevEnd - 5 && r.end <= (pollEnd ?? 0) + 5).sort((a, b) => a.start - b.start)[0];
            if (pollEnd === undefined || syncEnd === undefined || first === undefined) return;
            parts.notice.push(first.start - back);
            parts.poll.push(pollEnd - first.start);
            const listing = requests.find((r) => r.start >= first.start - 5 && r.end <= pollEnd + 5 && /^ports\?limit=\d+&fields=id&fields=revision_number$/.test(r.path));
            if (listing) parts.portsListing.push(listing.end - listing.start);
            parts.sync.push(syncEnd - pollEnd);
            parts.apply.push(m.enforcedAt[i]! - syncEnd);
          });
          const f = (x: number[]) => { const q = summarize(x); return `${q.p50_ms} / ${q.p99_ms}`; };
          return `p50 / p99 ms from the call's return (${parts.notice.length} samples lined up): to the poll's first request ${f(parts.notice)}; the poll ${f(parts.poll)} (Neutron's ports revisions listing, first page: ${parts.portsListing.length ? f(parts.portsListing) : "none, the poll went by id"}); translate and write ${f(parts.sync)}; host apply and report ${f(parts.apply)}`;
        };
        const rule = await measure(label, (i) => ml2Api.rule(groups[0]!.id, { protocol: "tcp", port_range_min: 12_000 + i, port_range_max: 12_000 + i }));
        out.rule_change_ml2_notices = ml2Format(rule);
        out.rule_change_ml2_breakdown = breakdown(rule);
        const port = await measure(label, () => ml2Api.updatePort(hv1Port, { security_groups: [groups[(portFlips++ % 2) + 1]!.id] }));
        out.port_change_ml2_notices = ml2Format(port);
        out.port_change_ml2_breakdown = breakdown(port);
        const after = await scrape();
        const polls = (kind: string) => metric(after, `palisade_openstack_polls_total{kind="${kind}"}`) - metric(before, `palisade_openstack_polls_total{kind="${kind}"}`);
        const reads = (kind: string) => metric(after, `palisade_openstack_poll_reads_total{read="${kind}"}`) - metric(before, `palisade_openstack_poll_reads_total{read="${kind}"}`);
        const perChange = (x: number) => round(x / (2 * opts.samples), 2);
        out.ml2_notices_during_samples = `load average ${loadavg().map((x) => x.toFixed(1)).join(" ")}; ${metric(after, "palisade_openstack_ml2_change_notices_total") - metric(before, "palisade_openstack_ml2_change_notices_total")} notices, polls: ${polls("changes")} changes, ${polls("idle")} idle, ${polls("full")} full (${2 * opts.samples} changes made); Neutron reads per change made: ${perChange(reads("list"))} list, ${perChange(reads("by_id"))} by id, ${perChange(reads("bindings"))} bindings`;
      }
      await stopWatch();
      await n2.stop();
      ml2Neutron = undefined;
    }
    stream.cancel();
    return out;
  } finally {
    watch?.kill("SIGKILL");
    clients.close();
    await lab.destroy();
    await neutron.stop();
    await ml2Neutron?.stop();
    await controller.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
