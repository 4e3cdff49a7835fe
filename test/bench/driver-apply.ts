// driver: a host with ~1,000 endpoints and ~10,000 rules (IPv4), in a fresh
// network namespace per measurement.
//   full:        driver apply (read-back + plan + batched restore) vs. a raw
//                ipset restore + iptables-restore --noflush of the same text
//   incremental: one endpoint changed; driver apply (planned from what changed,
//                as the driver does) vs. a raw restore of just the updates the
//                controller sent (rawChangeText)
// topology: "routed" (the controller's state as it is) or "bridged" (every
// tap a bridge port, the state through the driver's BridgeLayer; the raw
// floor of a change then also holds the twins and per-port set members the
// layer derived, host-feed.ts).
import { execa } from "execa";
import { createLogger } from "../../services/runtime/logger.js";
import type { Backend } from "../../services/driver/kernel/backend.js";
import { iptablesCommands } from "../../services/driver/kernel/backend.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { BENCH_IPSET_SESSION } from "./session-flag.js";
import { emptyFamilyState } from "../../services/driver/kernel/kernel-state.js";
import { planApply } from "../../services/driver/plan/plan.js";
import { applyRawChange, createHostFeed, rawBytes, type Topology } from "./host-feed.js";
import type { Endpoint } from "../../services/model/index.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { kernelMatch } from "./kernel-match.js";
import { percentile, round } from "./stats.js";

async function withNamespace<T>(name: string, fn: (ns: string) => Promise<T>): Promise<T> {
  await execa("ip", ["netns", "add", name]);
  try {
    return await fn(name);
  } finally {
    await execa("ip", ["netns", "del", name], { reject: false });
  }
}

export async function benchDriver(opts: { endpoints: number; profiles: number; rulesPerProfile: number; incrementalSamples: number; backend: Backend; topology?: Topology }) {
  const rand = mulberry32(42);
  const profiles = genProfiles(opts.profiles, opts.rulesPerProfile, rand);
  const endpoints = Array.from({ length: opts.endpoints }, (_, i) => genEndpoint("hv0", i, opts.profiles, rand));
  const bump = (e: Endpoint, i: number): Endpoint => ({ ...e, ipv4Nets: [...e.ipv4Nets, `10.250.${i >> 8}.${i & 255}/32`] });
  const topology = opts.topology ?? "routed";
  const feedOf = () => createHostFeed(profiles, endpoints, { topology });
  const want = feedOf().input();
  const rules = [...want.chains.values()].reduce((n, c) => n + c.rules.length, 0);
  const emptyKernel = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
  const fullPlan = planApply(want, emptyKernel);
  const logger = createLogger({ name: "bench", level: "silent" });
  const tag = `pbd${process.pid.toString(36)}${topology[0]}`;
  const restoreCmd = iptablesCommands(opts.backend, 4).restore;

  // Raw: the same final text, straight into a fresh namespace; then, per
  // change, just the chains and set members the controller sent.
  // The driver's namespace is made while the raw one still exists, so that
  // both kernels can be compared at the end (kernel-match.ts).
  const { raw, drv, match } = await withNamespace(`${tag}r`, async (rawNs) => {
    const run = createExecRunner({ netns: rawNs });
    const t0 = performance.now();
    await run.run("ipset", ["restore"], `${fullPlan.ipsetBefore.join("\n")}\n`);
    await run.run(restoreCmd, ["--noflush", "--wait", "10"], fullPlan.restore[4]!);
    const fullMs = performance.now() - t0;
    const feed = feedOf();
    const incMs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < opts.incrementalSamples; i++) {
      const text = feed.change((g) => g.upsertEndpoint(bump(endpoints[i]!, i))).raw;
      bytes = rawBytes(text);
      const t = performance.now();
      await applyRawChange(run, restoreCmd, text);
      incMs.push(performance.now() - t);
    }
    const raw = { fullMs, incMs: incMs.sort((a, b) => a - b), bytes };

  // Driver: read-back, plan, batched apply; then the same changes, each
  // planned from what changed (no read-back, no full diff).
  return withNamespace(`${tag}d`, async (ns) => {
    const dp = createDataplane({ runner: createExecRunner({ netns: ns }), backend: opts.backend, families: [4], logger, ipsetSession: BENCH_IPSET_SESSION });
    const feed = feedOf();
    const t0 = performance.now();
    const first = feed.take();
    await dp.apply(first.input, first.changes);
    const fullMs = performance.now() - t0;
    const incMs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < opts.incrementalSamples; i++) {
      feed.change((g) => g.upsertEndpoint(bump(endpoints[i]!, i)));
      const t = performance.now();
      const s = feed.take();
      const r = await dp.apply(s.input, s.changes);
      incMs.push(performance.now() - t);
      bytes = r.bytesWritten;
    }
    const drv = { fullMs, incMs: incMs.sort((a, b) => a - b), bytes };
    await dp.close();
    return { raw, drv, match: await kernelMatch(run, createExecRunner({ netns: ns }), opts.backend) };
  });
  });

  const p50 = (xs: number[]) => percentile(xs, 50);
  return {
    topology,
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
    // Both kernels hold the same rules and sets after the same changes.
    kernel_match: match.rulesMatch && match.setsMatch,
  };
}
