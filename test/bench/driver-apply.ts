// driver: a host with ~1,000 endpoints and ~10,000 rules (IPv4), in a fresh
// network namespace per measurement.
//   full:        driver apply (read-back + plan + batched restore) vs. a raw
//                ipset restore + iptables-restore --noflush of the same text
//   incremental: one endpoint changed; driver apply vs. a raw restore of just
//                the chains (and set members) that changed
import { execa } from "execa";
import { CalcGraph, chainKey, type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { Backend } from "../../services/driver/backend.js";
import { iptablesCommands } from "../../services/driver/backend.js";
import { renderBaseChains } from "../../services/driver/base-chains.js";
import { createExecRunner } from "../../services/driver/command-runner.js";
import { createDataplane } from "../../services/driver/dataplane.js";
import { DesiredState } from "../../services/driver/desired-state.js";
import { emptyFamilyState } from "../../services/driver/kernel-state.js";
import { planApply, type PlanInput } from "../../services/driver/plan.js";
import type { Endpoint, Profile } from "../../services/model/index.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { percentile, round } from "./stats.js";

/** The driver's view of host hv0, fed by the real calculation graph's updates. */
function createHostFeed(profiles: Profile[], endpoints: Endpoint[]) {
  let pending: HostUpdate[] = [];
  const g = new CalcGraph({ onHostUpdates: (_h, _r, u) => { pending.push(...u); } });
  for (const p of profiles) g.upsertProfile(p);
  for (const e of endpoints) g.upsertEndpoint(e);
  g.flush(1);
  const state = new DesiredState();
  state.apply(g.snapshot("hv0").updates);
  pending = [];
  const base = new Map<string, ChainDef>();
  for (const c of renderBaseChains(["tap"], 4)) base.set(chainKey(4, c.name), c);
  let rev = 1;
  return {
    input(): PlanInput {
      const chains = new Map(base);
      for (const [k, c] of state.chains) if (c.family === 4) chains.set(k, c);
      return { chains, sets: new Map([...state.sets].filter(([, x]) => x.family === 4)), families: [4], removeUnwanted: true };
    },
    /** Changes one endpoint; returns the updates the controller would send. */
    change(e: Endpoint): HostUpdate[] {
      g.upsertEndpoint(e);
      g.flush(++rev);
      const u = pending;
      pending = [];
      state.apply(u);
      return u;
    },
  };
}

async function withNamespace<T>(name: string, fn: (ns: string) => Promise<T>): Promise<T> {
  await execa("ip", ["netns", "add", name]);
  try {
    return await fn(name);
  } finally {
    await execa("ip", ["netns", "del", name], { reject: false });
  }
}

export async function benchDriver(opts: { endpoints: number; profiles: number; rulesPerProfile: number; incrementalSamples: number; backend: Backend }) {
  const rand = mulberry32(42);
  const profiles = genProfiles(opts.profiles, opts.rulesPerProfile, rand);
  const endpoints = Array.from({ length: opts.endpoints }, (_, i) => genEndpoint("hv0", i, opts.profiles, rand));
  const bump = (e: Endpoint, i: number): Endpoint => ({ ...e, ipv4Nets: [...e.ipv4Nets, `10.250.${i >> 8}.${i & 255}/32`] });
  const want = createHostFeed(profiles, endpoints).input();
  const rules = [...want.chains.values()].reduce((n, c) => n + c.rules.length, 0);
  const emptyKernel = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
  const fullPlan = planApply(want, emptyKernel);
  const logger = createLogger({ name: "bench", level: "silent" });
  const tag = `pbd${process.pid.toString(36)}`;
  const restoreCmd = iptablesCommands(opts.backend, 4).restore;

  // Raw: the same final text, straight into a fresh namespace; then, per
  // change, just the chains and set members the controller sent.
  const raw = await withNamespace(`${tag}r`, async (ns) => {
    const run = createExecRunner({ netns: ns });
    const t0 = performance.now();
    await run.run("ipset", ["restore"], `${fullPlan.ipsetBefore.join("\n")}\n`);
    await run.run(restoreCmd, ["--noflush", "--wait", "10"], fullPlan.restore[4]!);
    const fullMs = performance.now() - t0;
    const feed = createHostFeed(profiles, endpoints);
    const incMs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < opts.incrementalSamples; i++) {
      const updates = feed.change(bump(endpoints[i]!, i));
      const chains = updates.flatMap((u) => (u.type === "chain-update" && u.chain.family === 4 ? [u.chain] : []));
      const members = updates.flatMap((u) => (u.type === "ipset-delta" && u.family === 4 ? u.added.map((m) => `add ${u.name} ${m} -exist`) : []));
      const text = ["*filter", ...chains.map((c) => `:${c.name} - [0:0]`), ...chains.flatMap((c) => c.rules.map((r) => `-A ${c.name} ${r}`)), "COMMIT", ""].join("\n");
      bytes = text.length + members.join("\n").length;
      const t = performance.now();
      if (members.length) await run.run("ipset", ["restore"], `${members.join("\n")}\n`);
      await run.run(restoreCmd, ["--noflush", "--wait", "10"], text);
      incMs.push(performance.now() - t);
    }
    return { fullMs, incMs: incMs.sort((a, b) => a - b), bytes };
  });

  // Driver: read-back, plan, batched apply; then the same changes.
  const drv = await withNamespace(`${tag}d`, async (ns) => {
    const dp = createDataplane({ runner: createExecRunner({ netns: ns }), backend: opts.backend, families: [4], logger });
    const feed = createHostFeed(profiles, endpoints);
    const t0 = performance.now();
    await dp.apply(feed.input());
    const fullMs = performance.now() - t0;
    const incMs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < opts.incrementalSamples; i++) {
      feed.change(bump(endpoints[i]!, i));
      const t = performance.now();
      const r = await dp.apply(feed.input());
      incMs.push(performance.now() - t);
      bytes = r.bytesWritten;
    }
    return { fullMs, incMs: incMs.sort((a, b) => a - b), bytes };
  });

  const p50 = (xs: number[]) => percentile(xs, 50);
  return {
    backend: opts.backend,
    endpoints: opts.endpoints,
    rules,
    apply_ms: round(drv.fullMs),
    raw_restore_ms: round(raw.fullMs),
    ratio: round(drv.fullMs / raw.fullMs),
    incremental_apply_ms: round(p50(drv.incMs)),
    raw_incremental_ms: round(p50(raw.incMs)),
    incremental_ratio: round(p50(drv.incMs) / p50(raw.incMs)),
    incremental_bytes: drv.bytes,
    raw_incremental_bytes: raw.bytes,
  };
}
