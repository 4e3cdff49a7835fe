// calc: the pure calculation core at cloud scale — hosts × endpoints,
// profiles × rules, realistic tag sharing. Initial full compute (with RSS),
// then single-object updates (endpoint moves between profiles, profile rule
// edits, tag changes), each followed by a flush, as one etcd revision would.
import { CalcGraph } from "../../services/calc/index.js";
import type { Endpoint, Profile } from "../../services/model/index.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { percentile, round } from "./stats.js";

export function benchCalc(opts: { hosts: number; endpointsPerHost: number; profiles: number; rulesPerProfile: number; updates: number }) {
  const rand = mulberry32(7);
  const profiles = genProfiles(opts.profiles, opts.rulesPerProfile, rand);
  const endpoints: Endpoint[] = [];
  for (let h = 0; h < opts.hosts; h++) for (let i = 0; i < opts.endpointsPerHost; i++) endpoints.push(genEndpoint(`hv${h}`, i, opts.profiles, rand));
  let emitted = 0;
  // As in the controller: nobody listens while the model loads; drivers then
  // connect (each takes a snapshot) and listen from then on.
  const graph = new CalcGraph({ onHostUpdates: (_h, _r, u) => { emitted += u.length; } }, undefined, { listen: "subscribed" });
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  for (const p of profiles) graph.upsertProfile(p);
  for (const e of endpoints) graph.upsertEndpoint(e);
  graph.flush(1);
  const initialMs = performance.now() - t0;
  global.gc?.();
  const rssMb = (process.memoryUsage().rss - rss0) / 1024 / 1024;
  const ts = performance.now();
  let snapshotUpdates = 0;
  for (let h = 0; h < opts.hosts; h++) {
    graph.subscribe(`hv${h}`);
    snapshotUpdates += graph.snapshot(`hv${h}`).updates.length;
  }
  const snapshotsMs = performance.now() - ts;
  // Steady state: the snapshots' garbage (promoted while being built) would
  // otherwise land in the update latencies as long scavenges.
  global.gc?.();

  const samples: number[] = [];
  const byKind: number[][] = [[], [], []];
  const tAll = performance.now();
  for (let i = 0; i < opts.updates; i++) {
    const kind = i % 3;
    const t = performance.now();
    if (kind === 0) {
      // An endpoint changes its profiles (tag memberships move).
      const e = endpoints[Math.floor(rand() * endpoints.length)]!;
      const next = { ...e, profileIds: [`p${Math.floor(rand() * opts.profiles)}`] };
      graph.upsertEndpoint(next);
      endpoints[endpoints.indexOf(e)] = next;
    } else if (kind === 1) {
      // A profile's rules change (re-rendered once, sent to its hosts).
      const p = profiles[Math.floor(rand() * profiles.length)]!;
      const next: Profile = { ...p, inboundRules: [...p.inboundRules.slice(1), p.inboundRules[0]!] };
      graph.upsertProfile(next);
      profiles[profiles.indexOf(p)] = next;
    } else {
      // A new endpoint appears on some host.
      graph.upsertEndpoint(genEndpoint(`hv${Math.floor(rand() * opts.hosts)}`, opts.endpointsPerHost + i, opts.profiles, rand));
    }
    graph.flush(2 + i);
    samples.push(performance.now() - t);
    byKind[kind]!.push(performance.now() - t);
  }
  const totalS = (performance.now() - tAll) / 1000;
  samples.sort((a, b) => a - b);
  return {
    hosts: opts.hosts,
    endpoints: opts.hosts * opts.endpointsPerHost,
    profiles: opts.profiles,
    initial_ms: round(initialMs, 0),
    rss_mb: round(rssMb, 0),
    snapshots_all_hosts_ms: round(snapshotsMs, 0),
    snapshot_updates: snapshotUpdates,
    update_p50_ms: round(percentile(samples, 50), 3),
    update_p99_ms: round(percentile(samples, 99), 3),
    updates_per_s: round(opts.updates / totalS, 0),
    p99_ms_by_kind: byKind.map((xs) => round(percentile(xs.sort((a, b) => a - b), 99), 2)).join("/"),
    updates_emitted: emitted,
  };
}
