// The I/O half of the driver: reads the kernel (iptables-save of the filter
// and raw tables, ipset save),
// runs a plan as one ipset restore, one iptables-restore --noflush per
// family, and one final ipset restore (DESIGN §6.7). A set batch of add/del
// lines alone goes through a long-lived `ipset -` session instead, when
// enabled (kernel/ipset-session.ts): no process start per apply.
//
// What it knows of the kernel, in one of three states:
//   clean     the kernel holds exactly what it last programmed (the
//             reference): after a successful apply that removed unwanted
//             objects, or a read-back that found no drift. An apply that
//             is told what changed plans from the change alone
//             (planChanges): O(change), no read-back, no full diff.
//   known     a read-back (a drift check's): plans in full against it.
//   unknown   after a failure, and before the first in-sync (leftovers are
//             kept next to what we wrote): the next apply reads the kernel
//             back first.
//
// Drift means "the kernel no longer holds what we last programmed" — not
// "the kernel differs from the newest desired state": a change the
// controller sent a moment ago is pending work, not tampering, and must
// neither be logged as a repair nor counted as one (DESIGN §6.9).
import type { Logger } from "pino";
import type { IpVersion } from "../../model/index.js";
import { iptablesCommands, type Backend } from "../kernel/backend.js";
import type { CommandRunner } from "../kernel/command-runner.js";
import { emptyFamilyState, parseIpsetSave, parseIptablesSave, type KernelState } from "../kernel/kernel-state.js";
import type { DesiredChanges } from "../sync/desired-state.js";
import { planApply, planCleanup, planIsEmpty, type Plan, type PlanInput } from "../plan/plan.js";
import { planChanges } from "../plan/plan-changes.js";
import { ProgrammedState } from "../plan/programmed-state.js";
import { IpsetSessionError, openIpsetSession, sessionEligible, type IpsetSession, type SessionFailure } from "../kernel/ipset-session.js";

export interface ApplyResult {
  durationMs: number;
  /** Milliseconds per stage that ran: ipset (both ipset restores), ipv4, ipv6; conntrack (the driver's deletions, DESIGN §6.14). */
  stages: Partial<Record<"ipset" | "ipv4" | "ipv6" | "conntrack", number>>;
  chainsWritten: number;
  chainsRemoved: number;
  ipsetLines: number;
  bytesWritten: number;
}

export interface ApplySource {
  input: PlanInput;
  /** What changed since the previous apply's input; undefined = unknown (plan in full). */
  changes?: DesiredChanges;
}

export interface Dataplane {
  readonly backend: Backend;
  readKernel(): Promise<KernelState>;
  /**
   * Programs `input`. With `changes` (everything that may differ from the
   * previous apply's input) and a clean kernel, only the changed objects
   * are looked at and written; otherwise desired vs. kernel in full. The
   * input is read only synchronously, when the plan is made: the caller
   * may change it afterwards.
   */
  apply(input: PlanInput, changes?: DesiredChanges): Promise<ApplyResult>;
  /**
   * apply(), with the input taken from `take` at the moment the plan is
   * made (after any read-back): what an apply answers for is fixed with
   * its input (the driver's acknowledgements, DESIGN §5.3).
   */
  applyFrom(take: () => ApplySource): Promise<ApplyResult>;
  /**
   * Reads the kernel back and compares it with what the last successful
   * apply programmed; true when someone else changed it. The next apply()
   * then repairs (and applies whatever is pending) from what the kernel
   * really holds. False when nothing has been applied yet, or since a
   * failed apply (our own half-written state is not drift).
   */
  detectDrift(): Promise<boolean>;
  /** Rules and sets the last successful apply left programmed (metrics); undefined after a failure. */
  programmed(): { rules: Record<IpVersion, number>; sets: number } | undefined;
  /**
   * Removes everything Palisade owns; forgets what was programmed. (There is
   * no other way to drop the dataplane's knowledge from outside: every doubt
   * reaches it as a failed apply, which forgets, or as a drift check, which
   * replaces it with a read-back — the tamper watch asks for one, DESIGN §6.9.)
   */
  cleanup(): Promise<ApplyResult>;
  /** The ipset session's process id while one runs (DESIGN §6.7). */
  readonly ipsetSessionPid: number | undefined;
  /** Ends the ipset session, if any (driver shutdown); a later apply may start another. */
  close(): Promise<void>;
}

/** Why a session failed: the batch's (ipset-session.ts), or `start` (the runner could not start the process). */
export type SessionFailureReason = SessionFailure | "start";

/** What the dataplane tells about its ipset session (metrics, logs). */
export interface IpsetSessionEvents {
  started(pid: number | undefined): void;
  /** A session failed (an error in a batch, the process ended, no answer): the batch's apply failed, or (ended between applies, or could not start) went through a restore. */
  failed(reason: SessionFailureReason): void;
  /** The circuit breaker tripped: sessions are off for `forMs` (DESIGN §6.7). */
  disabled?(reason: SessionFailureReason, forMs: number): void;
}

/** Session failures in a row that turn sessions off (DESIGN §6.7); "in a row": no session completed SESSION_HEALTHY_BATCHES batches between them. */
export const SESSION_BREAKER_FAILURES = 3;
/** Batches a session completes before its earlier failures (and the backoff) are forgiven. */
export const SESSION_HEALTHY_BATCHES = 100;
/** How long sessions stay off the first time the breaker trips; doubled each time it trips again, up to the maximum. */
export const SESSION_BREAKER_BACKOFF_MS = 60_000;
export const SESSION_BREAKER_MAX_BACKOFF_MS = 3_600_000;

/** `--wait` waits for the xtables lock instead of failing (legacy backend). */
const WAIT_ARGS = ["--wait", "10"];

export function createDataplane(opts: {
  runner: CommandRunner; backend: Backend; families: IpVersion[]; logger: Logger; now?: () => number;
  /**
   * Set member changes (batches of add/del lines alone) through a long-lived
   * `ipset -` in the runner's namespace (DESIGN §6.7). Default off here
   * (whoever turns it on must close()); the driver turns it on.
   */
  ipsetSession?: boolean;
  /** How long a session batch may wait for its sentinel; default 10 s. */
  ipsetSessionTimeoutMs?: number;
  /** How long the circuit breaker first turns sessions off (SESSION_BREAKER_BACKOFF_MS; 0 = never off beyond the failed apply, tests only). */
  ipsetSessionBackoffMs?: number;
  sessionEvents?: IpsetSessionEvents;
}): Dataplane {
  const { runner, backend, families, logger } = opts;
  const sessionsEnabled = opts.ipsetSession === true && runner.openSession !== undefined;
  /** The running session, if any. */
  let session: IpsetSession | undefined;
  /** False from a session failure until the next successful apply: set batches go through restores. */
  let sessionAllowed = sessionsEnabled;
  const now = opts.now ?? (() => performance.now());
  // The circuit breaker (DESIGN §6.7): a session that fails on its first
  // batch, or SESSION_BREAKER_FAILURES failures in a row, turn sessions off
  // until `sessionsOffUntil` (now()), however many applies succeed meanwhile:
  // a session that can never work must not fail an apply (and cost a
  // read-back) after every successful one.
  const initialBackoffMs = opts.ipsetSessionBackoffMs ?? SESSION_BREAKER_BACKOFF_MS;
  let backoffMs = initialBackoffMs;
  let sessionsOffUntil = -Infinity;
  /** Session failures since a session last completed SESSION_HEALTHY_BATCHES batches. */
  let failuresInARow = 0;
  /** Batches the running session completed. */
  let sessionBatches = 0;
  /** The drift reference: what the last successful apply programmed. */
  let reference: ProgrammedState | undefined;
  /** The kernel holds exactly `reference` (see the header). */
  let clean = false;
  /** Otherwise, what the kernel holds when known. */
  let known: KernelState | undefined;

  async function readKernel(): Promise<KernelState> {
    const state: KernelState = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, raw: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
    for (const f of families) {
      // One table per read: a whole iptables-save would also print nat and
      // mangle, which may be large on a host that is not only ours.
      const out = await runner.run(iptablesCommands(backend, f).save, ["-t", "filter"]);
      state.families[f] = parseIptablesSave(out.stdout);
      const raw = await runner.run(iptablesCommands(backend, f).save, ["-t", "raw"]);
      state.raw![f] = parseIptablesSave(raw.stdout, "raw");
    }
    const sets = await runner.run("ipset", ["save"]);
    state.sets = parseIpsetSave(sets.stdout);
    return state;
  }

  /** A session failed (it is gone): restores until an apply succeeds; the breaker counts it. */
  function sessionFailed(reason: SessionFailureReason, firstBatch: boolean): void {
    opts.sessionEvents?.failed(reason);
    session = undefined;
    sessionAllowed = false;
    failuresInARow++;
    if (!firstBatch && failuresInARow < SESSION_BREAKER_FAILURES) return;
    sessionsOffUntil = now() + backoffMs;
    logger.warn({ reason, firstBatch, failuresInARow, offForMs: backoffMs }, `ipset sessions off for ${Math.round(backoffMs / 1000)} s (${firstBatch ? "a session failed on its first batch" : `${failuresInARow} session failures in a row`}); set batches go through ipset restore meanwhile`);
    opts.sessionEvents?.disabled?.(reason, backoffMs);
    backoffMs = Math.min(backoffMs * 2, SESSION_BREAKER_MAX_BACKOFF_MS);
    failuresInARow = 0;
  }

  /** One set batch: through the session when it may, else one `ipset restore`. */
  async function runIpset(lines: string[]): Promise<void> {
    if (sessionAllowed && now() >= sessionsOffUntil && sessionEligible(lines)) {
      if (session?.ended) {
        // It died between applies: nothing of this batch was written to it,
        // so a restore carries the batch; a new session after this apply.
        logger.warn({ pid: session.pid }, "ipset session had ended; this batch goes through ipset restore");
        sessionFailed("ended", sessionBatches === 0);
      } else {
        if (!session) {
          try {
            session = openIpsetSession(runner, { timeoutMs: opts.ipsetSessionTimeoutMs });
          } catch (err) {
            // Nothing was written: a restore carries this batch in this apply.
            logger.warn({ err: (err as Error).message }, "ipset session could not start; this batch goes through ipset restore");
            sessionFailed("start", true);
          }
          sessionBatches = 0;
          if (session) opts.sessionEvents?.started(session.pid);
        }
        if (session) {
          try {
            await session.run(lines);
            if (++sessionBatches === SESSION_HEALTHY_BATCHES) {
              failuresInARow = 0;
              backoffMs = initialBackoffMs;
            }
            return;
          } catch (err) {
            // Killed by now. Later lines may have been carried out: the
            // caller's apply fails and forgets, the next one reads back and
            // goes through restores until an apply succeeds.
            const reason = err instanceof IpsetSessionError ? err.reason : "error";
            logger.warn({ pid: session.pid, reason, err: (err as Error).message }, "ipset session failed; the apply fails, set batches go through ipset restore until an apply succeeds");
            sessionFailed(reason, sessionBatches === 0);
            throw err;
          }
        }
      }
    }
    await runner.run("ipset", ["restore"], `${lines.join("\n")}\n`);
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
      bytes += plan.ipsetBefore.reduce((n, l) => n + l.length + 1, 0);
      await timed("ipset", () => runIpset(plan.ipsetBefore));
    }
    // The two families are independent tables: restore them concurrently
    // (nft: separate netlink transactions; legacy: --wait serialises on the lock).
    // allSettled: never return (and let the next apply plan) while the other
    // family's restore is still running.
    const settled = await Promise.allSettled(families.map((f) => (plan.restore[f] ? restore(f, plan.restore[f]!) : undefined)));
    const failed = settled.find((x) => x.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (plan.ipsetAfter.length) {
      bytes += plan.ipsetAfter.reduce((n, l) => n + l.length + 1, 0);
      await timed("ipset", () => runIpset(plan.ipsetAfter));
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

  function forget(): void {
    reference = undefined;
    clean = false;
    known = undefined;
  }

  async function applyFrom(take: () => ApplySource): Promise<ApplyResult> {
    if (!clean && !known) known = await readKernel();
    // From here to execute(), nothing awaits: the input is read, planned
    // and (for the reference) copied as it is now.
    const { input, changes } = take();
    let plan: Plan;
    let commit: () => void;
    const prev = reference;
    if (clean && prev && changes && input.removeUnwanted && sameFamilies(prev.families, input.families)) {
      const c = planChanges(input, changes, prev);
      plan = c.plan;
      commit = () => prev.edit(c.edits);
    } else {
      const kernel = known ?? prev!.kernelState();
      plan = planApply(input, kernel);
      const next = ProgrammedState.copyOf(input);
      // Before the first in-sync nothing is removed: leftovers stay next to
      // what we wrote, and the next apply (the first snapshot, possibly much
      // later: the controller may be away) reads the kernel back rather than
      // trust what it held then (a host firewall reload meanwhile would
      // leave the hook missing after that apply).
      commit = () => {
        reference = next;
        clean = input.removeUnwanted;
        known = undefined;
      };
    }
    try {
      const r = await execute(plan);
      commit();
      sessionAllowed = sessionsEnabled;
      return r;
    } catch (err) {
      forget();
      throw err;
    }
  }

  return {
    backend,
    readKernel,
    apply: (input, changes) => applyFrom(() => ({ input, changes })),
    applyFrom,
    async detectDrift() {
      const kernel = await readKernel();
      clean = false;
      known = kernel;
      if (!reference) return false;
      // The planner's notion of "differs" (rule hashes, hook position, set
      // members, unwanted leftovers) against what we wrote last time.
      const plan = planApply(reference.asPlanInput(), kernel);
      if (planIsEmpty(plan, families)) {
        // The kernel holds the reference: the next apply may plan from its change alone.
        if (reference.removeUnwanted) { clean = true; known = undefined; }
        return false;
      }
      logger.warn({ chains: plan.chainsWritten, removed: plan.chainsRemoved, ipsetLines: plan.ipsetBefore.length + plan.ipsetAfter.length }, "dataplane drift detected; repairing");
      return true;
    },
    programmed: () => (reference ? { rules: { ...reference.rules }, sets: reference.sets.size } : undefined),
    async cleanup() {
      const kernel = await readKernel();
      const r = await execute(planCleanup(kernel, families));
      forget();
      return r;
    },
    get ipsetSessionPid() { return session && !session.ended ? session.pid : undefined; },
    async close() {
      const s = session;
      session = undefined;
      await s?.close();
    },
  };
}

function sameFamilies(a: readonly IpVersion[], b: readonly IpVersion[]): boolean {
  return a.length === b.length && a.every((f) => b.includes(f));
}
