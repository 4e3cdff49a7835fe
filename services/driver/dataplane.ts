// The I/O half of the driver: reads the kernel (iptables-save, ipset save),
// runs the plan as one ipset restore, one iptables-restore --noflush per
// family, and one final ipset restore. Keeps a cache of what it believes
// the kernel holds; any failure drops the cache so the next apply starts
// from a fresh read-back.
//
// Drift means "the kernel no longer holds what we last programmed" — not
// "the kernel differs from the newest desired state": a change the
// controller sent a moment ago is pending work, not tampering, and must
// neither be logged as a repair nor counted as one.
import type { Logger } from "pino";
import type { IpVersion } from "../model/index.js";
import { setTypeOf } from "../contract/dataplane-names.js";
import { iptablesCommands, type Backend } from "./backend.js";
import type { CommandRunner } from "./command-runner.js";
import { HOOKS, emptyFamilyState, parseIpsetSave, parseIptablesSave, type KernelState } from "./kernel-state.js";
import { hookRule, planApply, planCleanup, type Plan, type PlanInput } from "./plan.js";
import { chainHashes } from "./rule-hash.js";

export interface ApplyResult {
  durationMs: number;
  /** Milliseconds per stage that ran: ipset (both ipset restores), ipv4, ipv6. */
  stages: Partial<Record<"ipset" | "ipv4" | "ipv6", number>>;
  chainsWritten: number;
  chainsRemoved: number;
  ipsetLines: number;
  bytesWritten: number;
}

export interface Dataplane {
  readonly backend: Backend;
  readKernel(): Promise<KernelState>;
  /** Programs `input`; on success it becomes the drift reference, so the caller must not mutate it afterwards. */
  apply(input: PlanInput): Promise<ApplyResult>;
  /**
   * Reads the kernel back and compares it with what the last successful
   * apply programmed; true when someone else changed it. Refreshes the
   * cache either way, so the next apply() repairs (and applies whatever is
   * pending) from what the kernel really holds. False when nothing has been
   * applied yet, or since a failed apply (our own half-written state is not
   * drift).
   */
  detectDrift(): Promise<boolean>;
  cleanup(): Promise<ApplyResult>;
  invalidate(): void;
}

/** `--wait` waits for the xtables lock instead of failing (legacy backend). */
const WAIT_ARGS = ["--wait", "10"];

export function createDataplane(opts: { runner: CommandRunner; backend: Backend; families: IpVersion[]; logger: Logger; now?: () => number }): Dataplane {
  const { runner, backend, families, logger } = opts;
  const now = opts.now ?? (() => performance.now());
  let cache: KernelState | undefined;
  /** The input of the last successful apply: the reference for drift. */
  let lastApplied: PlanInput | undefined;

  async function readKernel(): Promise<KernelState> {
    const state: KernelState = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
    for (const f of families) {
      const out = await runner.run(iptablesCommands(backend, f).save, ["-t", "filter"]);
      state.families[f] = parseIptablesSave(out.stdout);
    }
    const sets = await runner.run("ipset", ["save"]);
    state.sets = parseIpsetSave(sets.stdout);
    return state;
  }

  async function execute(plan: Plan): Promise<ApplyResult> {
    const t0 = now();
    let bytes = 0;
    const stages: ApplyResult["stages"] = {};
    const timed = async (stage: "ipset" | "ipv4" | "ipv6", fn: () => Promise<unknown>) => {
      const t = now();
      await fn();
      stages[stage] = (stages[stage] ?? 0) + (now() - t);
    };
    const restore = (f: IpVersion, input: string) => {
      bytes += input.length;
      return timed(f === 4 ? "ipv4" : "ipv6", () => runner.run(iptablesCommands(backend, f).restore, ["--noflush", ...WAIT_ARGS], input));
    };
    for (const f of families) {
      const input = plan.restoreFirst[f];
      if (input) await restore(f, input);
    }
    if (plan.ipsetBefore.length) {
      const input = `${plan.ipsetBefore.join("\n")}\n`;
      bytes += input.length;
      await timed("ipset", () => runner.run("ipset", ["restore"], input));
    }
    // The two families are independent tables: restore them concurrently
    // (nft: separate netlink transactions; legacy: --wait serialises on the lock).
    // allSettled: never return (and let the next apply plan) while the other
    // family's restore is still running.
    const settled = await Promise.allSettled(families.map((f) => (plan.restore[f] ? restore(f, plan.restore[f]!) : undefined)));
    const failed = settled.find((x) => x.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (plan.ipsetAfter.length) {
      const input = `${plan.ipsetAfter.join("\n")}\n`;
      bytes += input.length;
      await timed("ipset", () => runner.run("ipset", ["restore"], input));
    }
    return {
      durationMs: now() - t0,
      stages,
      chainsWritten: plan.chainsWritten,
      chainsRemoved: plan.chainsRemoved,
      ipsetLines: plan.ipsetBefore.length + plan.ipsetAfter.length,
      bytesWritten: bytes,
    };
  }

  /** What the kernel holds after a successful apply of `input`. */
  function afterApply(input: PlanInput, before: KernelState): KernelState {
    const next: KernelState = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
    for (const f of families) {
      const fam = next.families[f];
      if (!input.removeUnwanted) for (const [n, c] of before.families[f].chains) fam.chains.set(n, c);
      for (const c of input.chains.values()) if (c.family === f) fam.chains.set(c.name, { hashes: chainHashes(c) });
      for (const b of Object.keys(HOOKS)) {
        fam.hookPositions.set(b, [1]);
        fam.firstRuleHash.set(b, hookRule(b).hash);
      }
    }
    if (!input.removeUnwanted) for (const [n, s] of before.sets) next.sets.set(n, s);
    for (const [n, s] of input.sets) next.sets.set(n, { family: s.family, type: setTypeOf(n), members: new Set(s.members) });
    return next;
  }

  return {
    backend,
    readKernel,
    invalidate() {
      cache = undefined;
    },
    async apply(input) {
      const kernel = cache ?? (await readKernel());
      const plan = planApply(input, kernel);
      try {
        const r = await execute(plan);
        cache = afterApply(input, kernel);
        lastApplied = input;
        return r;
      } catch (err) {
        cache = undefined;
        lastApplied = undefined;
        throw err;
      }
    },
    async detectDrift() {
      const kernel = await readKernel();
      cache = kernel;
      if (!lastApplied) return false;
      // The planner's notion of "differs" (rule hashes, hook position, set
      // members, unwanted leftovers) against what we wrote last time.
      const plan = planApply(lastApplied, kernel);
      const drift = plan.ipsetBefore.length > 0 || families.some((f) => plan.restoreFirst[f] !== undefined) || plan.ipsetAfter.length > 0 || families.some((f) => plan.restore[f] !== undefined);
      if (drift) {
        logger.warn({ chains: plan.chainsWritten, removed: plan.chainsRemoved, ipsetLines: plan.ipsetBefore.length + plan.ipsetAfter.length }, "dataplane drift detected; repairing");
      }
      return drift;
    },
    async cleanup() {
      const kernel = await readKernel();
      const r = await execute(planCleanup(kernel, families));
      cache = undefined;
      lastApplied = undefined;
      return r;
    },
  };
}
