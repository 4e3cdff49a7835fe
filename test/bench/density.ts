// density (issue #14 item 6): one host at growing endpoint counts, IPv4, nft
// and legacy, ~100 profiles × 10 rules, in the set-based layout (DESIGN
// §6.5). Profile lists: "random" — each endpoint 1–2 random profiles (model-gen, the
// seed of the driver section, so 1,000 endpoints is the same host; nearly
// every endpoint has a list of its own: the worst case for classes) — or
// "pool" — each endpoint takes one of 50 such lists (a cloud where
// workloads share their security-group combinations) — or "combos" — 40
// profiles combined into every ordered pair, 1,560 distinct lists (issue #23
// item 1: each tenant's own group plus a shared one, in either order; the
// class layout rendered chains per list, the position layout per profile).
// Per size and backend, in fresh network namespaces:
//   rules        rule lines of all chains the host gets (base chains included)
//   first apply  driver path (createDataplane().apply, read-back included) and
//                the raw floor (ipset restore + iptables-restore --noflush of
//                the same final text)
//   changes      p50 of: endpoint added (its profile list already in use on
//                the host), endpoint address changed, profile rule changed
//                (one rule of the host's most used profile). Driver path:
//                dp.apply(the whole desired state); raw floor: exactly the
//                updates the CalcGraph emitted for the host, written as
//                ipset restore / iptables-restore --noflush input. The
//                driver plans from what changed, as it does (dp.apply(input,
//                changes)). Raw and driver samples alternate, each on its
//                own namespace.
// Topology: "routed" or "bridged" (every tap a port of a bridge, 40 per
// bridge, the state through the driver's BridgeLayer as the driver does;
// host-feed.ts). Bridged, an added endpoint's tap joins a bridge in the same
// apply, and the raw floor of a change is what the kernel must receive for
// it: the controller's updates plus the twins, per-port set members and
// guard chains the layer derived (kernel_sets_match checks that the raw and
// driver namespaces end with the same sets).
// Plus controller memory per endpoint (density-memory.ts, a fresh process per
// size): CalcGraph with 1,000 hosts and 300 profiles, all hosts subscribed.
import { execa } from "execa";
import { fileURLToPath } from "node:url";
import type { CalcGraph } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { Backend } from "../../services/driver/kernel/backend.js";
import { iptablesCommands } from "../../services/driver/kernel/backend.js";
import { createExecRunner, type CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { BENCH_IPSET_SESSION } from "./session-flag.js";
import { emptyFamilyState, HOOKS } from "../../services/driver/kernel/kernel-state.js";
import { planApply } from "../../services/driver/plan/plan.js";
import { applyRawChange, createHostFeed, rawBytes, TOPOLOGIES, type Topology } from "./host-feed.js";
import { kernelMatch } from "./kernel-match.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { percentile, round } from "./stats.js";

const HOST = "hv0";
const KINDS = ["added", "address", "rule"] as const;
type Kind = (typeof KINDS)[number];

export type ListModel = "random" | "pool" | "combos";

/** "combos": the i-th of the 40 × 39 ordered pairs of profiles p0..p39. */
export function comboList(i: number): string[] {
  const j = i % (40 * 39);
  const a = Math.floor(j / 39);
  const b = j % 39;
  return [`p${a}`, `p${b >= a ? b + 1 : b}`];
}

/** Creates the namespaces, runs `fn`, and deletes what it created (also on failure). */
export async function withNamespaces<T>(names: string[], fn: () => Promise<T>): Promise<T> {
  const made: string[] = [];
  try {
    for (const n of names) {
      await execa("ip", ["netns", "add", n]);
      made.push(n);
    }
    return await fn();
  } finally {
    for (const n of made) await execa("ip", ["netns", "del", n], { reject: false });
  }
}

async function ruleLines(run: CommandRunner, backend: Backend): Promise<number> {
  const out = await run.run(iptablesCommands(backend, 4).save, ["-t", "filter"]);
  return out.stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Per kind of change: driver p50, raw p50, ratio, raw bytes of the last sample. */
type ChangeFigures = { [K in `${Kind}_${"p50_ms" | "raw_p50_ms" | "ratio" | "raw_bytes"}`]: number };

export interface DensityRow extends ChangeFigures {
  topology: Topology;
  lists: ListModel;
  backend: Backend;
  endpoints: number;
  rules: number;
  samples: number;
  first_apply_ms: number;
  raw_first_apply_ms: number;
  first_apply_ratio: number;
  kernel_rules_match: boolean;
  /** Raw and driver namespaces hold the same sets and members at the end. */
  kernel_sets_match: boolean;
  seconds: number;
}

async function densityOne(backend: Backend, size: number, samples: number, lists: ListModel, topology: Topology): Promise<DensityRow> {
  const t0 = performance.now();
  const rand = mulberry32(42);
  const PROFILES = 100;
  const profiles = genProfiles(PROFILES, 10, rand);
  const endpoints = Array.from({ length: size }, (_, i) => genEndpoint(HOST, i, PROFILES, rand));
  if (lists === "pool") {
    const pool = Array.from({ length: 50 }, (_, i) => genEndpoint(HOST, i, PROFILES, mulberry32(1000 + i)).profileIds);
    endpoints.forEach((e, i) => { endpoints[i] = { ...e, profileIds: [...pool[i % pool.length]!] }; });
  }
  if (lists === "combos") endpoints.forEach((e, i) => { endpoints[i] = { ...e, profileIds: comboList(i) }; });
  const feed = createHostFeed(profiles, endpoints, { host: HOST, topology });
  const want = feed.input();
  const rules = [...want.chains.values()].reduce((n, c) => n + c.rules.length, 0);
  const emptyKernel = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
  const fullPlan = planApply(want, emptyKernel);
  const restoreCmd = iptablesCommands(backend, 4).restore;
  const logger = createLogger({ name: "bench", level: "silent" });
  // The host's most used profile: its rule edits reach the most endpoints.
  const uses = new Map<string, number>();
  for (const e of endpoints) for (const p of e.profileIds) uses.set(p, (uses.get(p) ?? 0) + 1);
  const busiest = [...uses].sort((a, b) => b[1] - a[1])[0]![0];
  let profile = profiles.find((p) => p.id === busiest)!;
  const tag = `pdn${process.pid.toString(36)}${topology[0]}${backend[0]}${lists[0]}${size.toString(36)}`;
  const nsRaw = `${tag}r`;
  const nsDrv = `${tag}d`;

  return withNamespaces([nsRaw, nsDrv], async () => {
    const raw = createExecRunner({ netns: nsRaw });
    const dp = createDataplane({ runner: createExecRunner({ netns: nsDrv }), backend, families: [4], logger, ipsetSession: BENCH_IPSET_SESSION });
    global.gc?.();
    let t = performance.now();
    await raw.run("ipset", ["restore"], `${fullPlan.ipsetBefore.join("\n")}\n`);
    await raw.run(restoreCmd, ["--noflush", "--wait", "10"], fullPlan.restore[4]!);
    const rawFirst = performance.now() - t;
    global.gc?.();
    t = performance.now();
    const first = feed.take();
    await dp.apply(first.input, first.changes);
    const drvFirst = performance.now() - t;

    const times: Record<Kind, { drv: number[]; raw: number[]; bytes: number; ipset: number[] }> = {
      added: { drv: [], raw: [], bytes: 0, ipset: [] }, address: { drv: [], raw: [], bytes: 0, ipset: [] }, rule: { drv: [], raw: [], bytes: 0, ipset: [] },
    };
    const changeOf = (kind: Kind, k: number): [(g: CalcGraph) => void, { plug?: string[] }] => {
      if (kind === "added") {
        // A new endpoint with the profile list of one already on the host;
        // bridged, its tap joins a bridge in the same apply.
        const e = { ...genEndpoint(HOST, size + k, PROFILES, rand), profileIds: [...endpoints[(k * 37) % size]!.profileIds] };
        return [(g) => g.upsertEndpoint(e), { plug: [e.name] }];
      }
      if (kind === "address") {
        const i = (k * 53 + 11) % size;
        const e = { ...endpoints[i]!, ipv4Nets: [`10.250.${k >> 8}.${k & 255}/32`] };
        endpoints[i] = e;
        return [(g) => g.upsertEndpoint(e), {}];
      }
      const [first, ...rest] = profile.inboundRules;
      profile = { ...profile, inboundRules: [{ ...first!, match: { ...first!.match, dstPorts: [{ first: 3000 + k, last: 3000 + k }] } }, ...rest] };
      const p = profile;
      return [(g) => g.upsertProfile(p), {}];
    };
    for (const kind of KINDS) {
      for (let k = 0; k < samples; k++) {
        const text = feed.change(...changeOf(kind, k)).raw;
        const runRaw = async () => {
          const t1 = performance.now();
          await applyRawChange(raw, restoreCmd, text);
          times[kind].raw.push(performance.now() - t1);
          times[kind].bytes = rawBytes(text);
        };
        const runDrv = async () => {
          const t1 = performance.now();
          const s = feed.take();
          const r = await dp.apply(s.input, s.changes);
          times[kind].drv.push(performance.now() - t1);
          // The ipset stage alone (the session's round trip, or a restore): the rest is planning.
          times[kind].ipset.push(r.stages.ipset ?? 0);
        };
        // Alternate which goes first, so neither always runs on a warmer machine.
        if (k % 2) { await runDrv(); await runRaw(); } else { await runRaw(); await runDrv(); }
      }
    }
    // Sanity: both namespaces hold as many rules as the host now has (plus
    // the driver's hook rules in the built-in chains).
    const wantNow = [...feed.input().chains.values()].reduce((n, c) => n + c.rules.length, 0);
    const [inRaw, inDrv] = [await ruleLines(raw, backend), await ruleLines(createExecRunner({ netns: nsDrv }), backend)];
    const match = await kernelMatch(raw, createExecRunner({ netns: nsDrv }), backend);
    await dp.close();

    const p50 = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
    const row: Record<string, unknown> = {
      topology, lists, backend, endpoints: size, rules, samples,
      first_apply_ms: round(drvFirst, 0), raw_first_apply_ms: round(rawFirst, 0), first_apply_ratio: round(drvFirst / rawFirst),
    };
    for (const kind of KINDS) {
      const d = p50(times[kind].drv);
      const r = p50(times[kind].raw);
      Object.assign(row, { [`${kind}_ipset_p50_ms`]: round(p50(times[kind].ipset), 2), [`${kind}_p50_ms`]: round(d, 1), [`${kind}_raw_p50_ms`]: round(r, 1), [`${kind}_ratio`]: round(d / r), [`${kind}_raw_bytes`]: times[kind].bytes });
    }
    row.kernel_rules_match = inRaw === inDrv && inDrv === wantNow + Object.keys(HOOKS).length && match.rulesMatch;
    row.kernel_sets_match = match.setsMatch;
    row.seconds = round((performance.now() - t0) / 1000, 1);
    return row as unknown as DensityRow;
  });
}

/** Controller memory per endpoint, measured in a fresh process (density-memory.ts). */
async function memoryPerEndpoint(endpoints: number, hosts: number, profiles: number) {
  const child = fileURLToPath(new URL("./density-memory.js", import.meta.url));
  const out = await execa(process.execPath, ["--expose-gc", "--max-semi-space-size=64", "--max-old-space-size=8192", child, String(endpoints), String(hosts), String(profiles)]);
  return JSON.parse(out.stdout) as Record<string, number>;
}

/** Which profile-list models run. */
export const DENSITY_VARIANTS: readonly ListModel[] = ["random", "pool", "combos"];

export async function benchDensity(opts: { sizes: number[]; backends: Backend[]; samples: (size: number) => number; memory: number[]; baseline: number; variants?: readonly ListModel[]; topologies?: readonly Topology[] }) {
  const t0 = performance.now();
  const variants = opts.variants ?? DENSITY_VARIANTS;
  const topologies = opts.topologies ?? TOPOLOGIES;
  const memory: Record<string, number | string>[] = [];
  for (const n of opts.memory) memory.push(await memoryPerEndpoint(n, 1000, 300));
  const rows: DensityRow[] = [];
  for (const topology of topologies) {
    for (const lists of variants) {
      for (const backend of opts.backends) {
        for (const size of [opts.baseline, ...opts.sizes]) {
          rows.push(await densityOne(backend, size, opts.samples(size), lists, topology));
          global.gc?.();
        }
      }
    }
  }
  // Does a change cost the same on a full host as on a small one?
  const largest = Math.max(...opts.sizes);
  const vsBaseline: Record<string, number> = {};
  for (const topology of topologies) {
    for (const lists of variants) {
      for (const backend of opts.backends) {
        const row = (n: number) => rows.find((r) => r.topology === topology && r.lists === lists && r.backend === backend && r.endpoints === n)!;
        const [small, big] = [row(opts.baseline), row(largest)];
        // Routed keys as before this had topologies; bridged ones prefixed.
        const at = `${topology === "routed" ? "" : `${topology}_`}${lists}_${backend}`;
        vsBaseline[`${at}_added_${largest}_vs_${opts.baseline}`] = round(big.added_p50_ms / small.added_p50_ms);
        vsBaseline[`${at}_address_${largest}_vs_${opts.baseline}`] = round(big.address_p50_ms / small.address_p50_ms);
      }
    }
  }
  return { rows, vs_baseline: vsBaseline, memory, seconds: round((performance.now() - t0) / 1000, 0) };
}

/** The figures as a table (the JSON keeps every field). */
export function formatDensity(d: Awaited<ReturnType<typeof benchDensity>>): string {
  const head = ["topology", "lists", "backend", "endpoints", "rules", "first apply ms (raw, ×)", "added p50 ms (raw, ×)", "address p50 ms (raw, ×)", "rule p50 ms (raw, ×)", "n", "s"];
  const cell = (a: number, b: number, r: number) => `${a} (${b}, ${r.toFixed(2)}×)`;
  const lines = [head, ...d.rows.map((r) => [
    r.topology, r.lists, r.backend, String(r.endpoints), String(r.rules), cell(r.first_apply_ms, r.raw_first_apply_ms, r.first_apply_ratio),
    ...KINDS.map((k) => cell(r[`${k}_p50_ms`], r[`${k}_raw_p50_ms`], r[`${k}_ratio`])), String(r.samples), `${r.seconds}${r.kernel_rules_match ? "" : " RULES MISMATCH"}${r.kernel_sets_match ? "" : " SETS MISMATCH"}`,
  ])];
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const out = lines.map((l) => `density  ${l.map((c, i) => (i >= 3 && i < 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ")}`.trimEnd());
  out.push(`density  ${Object.entries(d.vs_baseline).map(([k, v]) => `${k}=${v}×`).join("  ")}`);
  for (const m of d.memory) out.push(`density  memory ${Object.entries(m).map(([k, v]) => `${k}=${v}`).join("  ")}`);
  out.push(`density  seconds=${d.seconds}`);
  return `${out.join("\n")}\n`;
}
