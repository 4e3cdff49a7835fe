// driver: a host with ~1,000 endpoints and ~10,000 rules (IPv4), in a fresh
// network namespace per measurement.
//   full:        driver apply (read-back + plan + batched restore) vs. a raw
//                ipset restore + iptables-restore --noflush of the same text
//   incremental: one endpoint changed; driver apply (planned from what changed,
//                as the driver does) vs. a raw restore of just the updates the
//                controller sent (rawChangeText)
import { execa } from "execa";
import { createLogger } from "../../services/runtime/logger.js";
import type { Backend } from "../../services/driver/kernel/backend.js";
import { iptablesCommands } from "../../services/driver/kernel/backend.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { emptyFamilyState } from "../../services/driver/kernel/kernel-state.js";
import { planApply } from "../../services/driver/plan/plan.js";
import { createHostFeed, rawChangeText } from "./host-feed.js";
import type { Endpoint } from "../../services/model/index.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { percentile, round } from "./stats.js";

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
      const text = rawChangeText(feed.change((g) => g.upsertEndpoint(bump(endpoints[i]!, i))));
      bytes = (text.restore?.length ?? 0) + text.ipsetBefore.join("\n").length + text.ipsetAfter.join("\n").length;
      const t = performance.now();
      if (text.ipsetBefore.length) await run.run("ipset", ["restore"], `${text.ipsetBefore.join("\n")}\n`);
      if (text.restore) await run.run(restoreCmd, ["--noflush", "--wait", "10"], text.restore);
      if (text.ipsetAfter.length) await run.run("ipset", ["restore"], `${text.ipsetAfter.join("\n")}\n`);
      incMs.push(performance.now() - t);
    }
    return { fullMs, incMs: incMs.sort((a, b) => a - b), bytes };
  });

  // Driver: read-back, plan, batched apply; then the same changes, each
  // planned from what changed (no read-back, no full diff).
  const drv = await withNamespace(`${tag}d`, async (ns) => {
    const dp = createDataplane({ runner: createExecRunner({ netns: ns }), backend: opts.backend, families: [4], logger });
    const feed = createHostFeed(profiles, endpoints);
    const t0 = performance.now();
    await dp.apply(feed.input(), feed.changes());
    const fullMs = performance.now() - t0;
    const incMs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < opts.incrementalSamples; i++) {
      feed.change((g) => g.upsertEndpoint(bump(endpoints[i]!, i)));
      const t = performance.now();
      const r = await dp.apply(feed.input(), feed.changes());
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
