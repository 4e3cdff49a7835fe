// The driver's counters (Driver.counters) and its apply metrics (names in
// metrics.ts), updated in one place. Nothing here iterates the state: the
// programmed rule and set counts come from the dataplane's reference,
// which keeps them as it changes (programmed-state.ts).
import type { IpVersion } from "../../model/index.js";
import type { ApplyResult, Dataplane } from "./dataplane.js";
import type { DriverMetrics } from "../metrics.js";

export interface DriverCounters {
  applies: number;
  applyFailures: number;
  driftRepairs: number;
  /** Applies that advanced a policy epoch (DESIGN §6.14). */
  epochAdvances: number;
  /** Conntrack entries deleted for addresses that left an endpoint. */
  conntrackDeleted: number;
  /** Open connections reported ended (revoked), as read from the kernel's counter. */
  connectionsEnded: number;
  /** ipset sessions started, and failed (DESIGN §6.7). */
  ipsetSessionStarts: number;
  ipsetSessionFailures: number;
}

export interface ApplyStats {
  readonly counters: DriverCounters;
  applied(r: ApplyResult, programmed: ReturnType<Dataplane["programmed"]>): void;
  /** A complete desired state at this revision is in the kernel. */
  inSync(revision: number): void;
  failed(): void;
  driftRepaired(): void;
  /** These families' policy epochs advanced (DESIGN §6.14). */
  epochAdvanced(families: readonly IpVersion[]): void;
  connectionsDeleted(n: number): void;
  connectionsDeleteFailed(): void;
  /** n more connections of this family were denied after a revocation (ended). */
  connectionsEnded(family: IpVersion, n: number): void;
  ipsetSessionStarted(): void;
  ipsetSessionFailed(reason: string): void;
  /** The session circuit breaker tripped (DESIGN §6.7). */
  ipsetSessionDisabled(reason: string): void;
}

export function createApplyStats(families: readonly IpVersion[], m: DriverMetrics | undefined): ApplyStats {
  const counters: DriverCounters = { applies: 0, applyFailures: 0, driftRepairs: 0, epochAdvances: 0, conntrackDeleted: 0, connectionsEnded: 0, ipsetSessionStarts: 0, ipsetSessionFailures: 0 };
  return {
    counters,
    applied(r, programmed) {
      counters.applies++;
      if (!m) return;
      m.applyDuration.observe({ stage: "total" }, r.durationMs / 1000);
      for (const [stage, ms] of Object.entries(r.stages)) m.applyDuration.observe({ stage }, ms / 1000);
      if (programmed) {
        for (const f of families) m.rulesProgrammed.set({ family: `ipv${f}` }, programmed.rules[f]);
        m.ipsetsProgrammed.set(programmed.sets);
      }
    },
    inSync(revision) {
      m?.appliedRevision.set(revision);
      m?.inSync.set(1);
    },
    failed() {
      counters.applyFailures++;
      m?.applyFailures.inc();
    },
    driftRepaired() {
      counters.driftRepairs++;
      m?.driftRepairs.inc();
    },
    epochAdvanced(fs) {
      counters.epochAdvances++;
      for (const f of fs) m?.epochAdvances.inc({ family: `ipv${f}` });
    },
    connectionsDeleted(n) {
      counters.conntrackDeleted += n;
      m?.conntrackDeleted.inc(n);
    },
    connectionsDeleteFailed() {
      m?.conntrackDeleteFailures.inc();
    },
    ipsetSessionStarted() {
      counters.ipsetSessionStarts++;
      m?.ipsetSessionStarts.inc();
    },
    ipsetSessionFailed(reason) {
      counters.ipsetSessionFailures++;
      m?.ipsetSessionFailures.inc({ reason });
    },
    ipsetSessionDisabled(reason) {
      m?.ipsetSessionDisabled.inc({ reason });
    },
    connectionsEnded(f, n) {
      counters.connectionsEnded += n;
      m?.connectionsEnded.inc({ family: `ipv${f}` }, n);
    },
  };
}
