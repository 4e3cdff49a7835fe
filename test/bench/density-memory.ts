// Controller memory per endpoint, run by density.ts as a fresh process:
//   node --expose-gc density-memory.js ENDPOINTS HOSTS PROFILES
// Prints one JSON object. The calculation graph as the controller holds it
// ("subscribed" listening), loaded with ENDPOINTS spread over HOSTS and
// PROFILES × 10 rules; measured after a forced GC before the model exists,
// after loading, and after every host subscribed and took its snapshot (as
// when all drivers are connected; the snapshots themselves are dropped).
// Only the graph: the controller's etcd watch, sync streams and status are
// not in it.
import { CalcGraph, DEFAULT_CALC_CONFIG } from "../../services/calc/index.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";

const [endpoints, hosts, profiles] = process.argv.slice(2, 5).map(Number) as [number, number, number];
const gc = () => { global.gc!(); global.gc!(); };
const mem = () => { gc(); const m = process.memoryUsage(); return { rss: m.rss, heap: m.heapUsed + m.external + m.arrayBuffers }; };

const m0 = mem();
const t0 = performance.now();
const graph = new CalcGraph({ onHostUpdates: () => {} }, DEFAULT_CALC_CONFIG, { listen: "subscribed" });
{
  const rand = mulberry32(7);
  for (const p of genProfiles(profiles, 10, rand)) graph.upsertProfile(p);
  for (let i = 0; i < endpoints; i++) graph.upsertEndpoint(genEndpoint(`hv${i % hosts}`, Math.floor(i / hosts), profiles, rand));
  graph.flush(1);
}
const loadS = (performance.now() - t0) / 1000;
const m1 = mem();
for (let h = 0; h < hosts; h++) {
  graph.subscribe(`hv${h}`);
  graph.snapshot(`hv${h}`);
}
const m2 = mem();
const per = (a: number, b: number) => Math.round((b - a) / endpoints);
process.stdout.write(`${JSON.stringify({
  endpoints, hosts, profiles,
  load_s: Math.round(loadS * 10) / 10,
  rss_mb: Math.round(m2.rss / 2 ** 20),
  loaded_rss_bytes_per_ep: per(m0.rss, m1.rss),
  loaded_heap_bytes_per_ep: per(m0.heap, m1.heap),
  subscribed_rss_bytes_per_ep: per(m0.rss, m2.rss),
  subscribed_heap_bytes_per_ep: per(m0.heap, m2.heap),
})}\n`);
// Keep the graph alive until measured.
if (graph.currentRevision < 0) process.stdout.write("");
