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
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
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
import { NeutronAdmin, neutronInstalled, startNeutron } from "../lab/neutron-process.js";
import { orAbort } from "./deadline.js";
import { round, summarize } from "./stats.js";

const readLog = (file: string) => { try { return readFileSync(file, "utf8"); } catch { return ""; } };
const tail = (file: string) => readLog(file).split("\n").slice(-15).join("\n") || "(empty)";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** polls: idle polls timed per size and feed (default 10). */
export async function benchOpenstack(opts: { sizes: [number, number]; samples: number; polls?: number; signal?: AbortSignal }) {
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
    const watchLog = (feed: ChangeFeed) => join(dir, `watch-${feed}.log`);
    const revision = async () => (await call(clients.policy, clients.policy.getRevision, {})).revision;
    const hv1Port = (await api.listAll("ports", "?binding:host_id=hv1&fields=id&limit=1")).ports[0].id as string;
    let portFlips = 0;
    for (const feed of ["revisions", "changed-since"] as const) {
      watch = execa(process.execPath, [join(packageRoot(), "dist/services/openstack/main.js"), "--insecure", "--controller", `unix:${socket}`, "watch",
        "--neutron-url", neutron.url, "--interval", "1", "--change-feed", feed, "--allow-mass-delete"], { reject: false, env: { OS_TOKEN: "noauth", PALISADE_LOG_LEVEL: "debug" }, stdout: "ignore", stderr: { file: watchLog(feed) } });
      // Wait for its first full sync (its summary, "synced: …" or "in sync:
      // nothing to write", carries "unchanged"; on a loaded machine the sync
      // can take longer than any fixed wait, and a change made while it
      // lists is another measurement) and one idle poll.
      while (!/"unchanged":\d+/.test(readLog(watchLog(feed)))) {
        if (opts.signal?.aborted) throw new Error(`aborted while waiting for palisade-openstack (${feed} feed) to finish its first sync; its log ends:\n${tail(watchLog(feed))}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 1_500));
      const measure = async (change: (i: number) => Promise<unknown>) => {
        const written: number[] = [];
        const enforced: number[] = [];
        for (let i = 0; i < opts.samples; i++) {
          const rev0 = await revision();
          // Spread the changes over the poll cycle.
          await new Promise((r) => setTimeout(r, 200 + Math.random() * 1_000));
          const t0 = performance.now();
          await change(i);
          let rev = rev0;
          while (rev === rev0) {
            if (opts.signal?.aborted) throw new Error(`aborted while waiting for palisade-openstack (${feed} feed) to write change ${i + 1} (revision still ${rev0}); its log ends:\n${tail(watchLog(feed))}`);
            await new Promise((r) => setTimeout(r, 10));
            rev = await revision();
          }
          written.push(performance.now() - t0);
          await appliedAt(rev);
          enforced.push(performance.now() - t0);
        }
        const w = summarize(written), e = summarize(enforced);
        return `written p50 ${w.p50_ms} / p99 ${w.p99_ms} ms, enforced p50 ${e.p50_ms} / p99 ${e.p99_ms} ms (${w.samples})`;
      };
      const key = feed.replace("-", "_");
      out[`rule_change_${key}`] = await measure((i) => api.rule(groups[0]!.id, { protocol: "tcp", port_range_min: 10_000 + i + (feed === "revisions" ? 0 : 1000), port_range_max: 10_000 + i + (feed === "revisions" ? 0 : 1000) }));
      // Alternates over both feeds' samples: with an odd count per feed, a
      // per-feed alternation would start the second feed with the group the
      // port already has (nothing to write, waited on for good).
      out[`port_change_${key}`] = await measure(() => api.updatePort(hv1Port, { security_groups: [groups[(portFlips++ % 2) + 1]!.id] }));
      watch.kill("SIGTERM");
      await watch;
      watch = undefined;
    }
    stream.cancel();
    return out;
  } finally {
    watch?.kill("SIGKILL");
    clients.close();
    await lab.destroy();
    await neutron.stop();
    await controller.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
