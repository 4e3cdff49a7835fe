// Port status after a port went ACTIVE (DESIGN §11.11): Palisade's view of
// each port (portAnswer) as a numbered feed that the ML2 driver in
// neutron-server reads and writes into Neutron (DOWN / ERROR, and ACTIVE
// again). Pure: told which ports' inputs changed, asked what changed after
// a sequence number.
//
// - Level, not edges: the feed holds each (port, host)'s *current* reported
//   status once, at the sequence number it last changed (a compacted log:
//   superseded entries are dropped). A reader behind by any amount reads on
//   and loses nothing; a new reader (a restarted neutron-server, or an
//   adapter restarted — another epoch) reads from 0 and gets every port's
//   status: the full state, with no gap to fill.
// - Damped: DOWN or ERROR becomes the reported status once the port has not
//   been ACTIVE for `holdMs` (the latest of the two then), so a controller
//   restart or a driver reconnecting does not flap every port of a cloud;
//   ACTIVE at once.
// - Incremental: `touch` names the ports whose inputs changed; pending ones
//   are kept apart for `tick`. Nothing is considered until the caller says
//   its view is live (`frozen` otherwise: a status stream that is down must
//   not turn every port DOWN).
import { randomUUID } from "node:crypto";
import { portAnswer, type Ml2View, type PortAnswer } from "./ml2-endpoint.js";
import type { NeutronPortStatus } from "./port-status.js";

export interface PortTransition {
  seq: number;
  id: string;
  host: string;
  status: NeutronPortStatus;
  detail: string;
}

export interface TransitionsPage {
  epoch: string;
  /** Read on after this (the last entry returned, or the feed's end). */
  seq: number;
  transitions: PortTransition[];
  /** Another epoch than the reader's: it reads again from 0 (the full state). */
  reset: boolean;
}

interface Tracked {
  /** The reported status and its entry's sequence number (0: nothing reported yet). */
  reported?: PortTransition;
  /** Not ACTIVE since this time, not reported yet. */
  pendingSince?: number;
  latest: PortAnswer;
}

const keyOf = (id: string, host: string) => `${id}\u0000${host}`;

export function createPortTransitions(o: { holdMs: number; now?: () => number }) {
  const now = o.now ?? Date.now;
  const epoch = randomUUID();
  const tracked = new Map<string, Tracked>();
  const pending = new Set<string>();
  /** Entries in sequence order; one is live while it is its port's `reported`. */
  let log: PortTransition[] = [];
  let seq = 0;

  const isLive = (e: PortTransition) => tracked.get(keyOf(e.id, e.host))?.reported === e;

  function report(k: string, t: Tracked): void {
    const e = { seq: ++seq, id: t.latest.id, host: t.latest.host, status: t.latest.status, detail: t.latest.detail };
    t.reported = e;
    log.push(e);
    t.pendingSince = undefined;
    pending.delete(k);
    // Compacted when superseded entries outnumber live ones: at most about
    // twice the ports, whatever the churn.
    if (log.length > 2 * tracked.size + 64) log = log.filter(isLive);
  }

  function consider(a: PortAnswer | undefined, id: string, host: string, t0: number): void {
    const k = keyOf(id, host);
    const t = tracked.get(k);
    if (!a) {
      tracked.delete(k);
      pending.delete(k);
      return;
    }
    if (!t) {
      const n: Tracked = { latest: a };
      tracked.set(k, n);
      if (a.status === "ACTIVE") report(k, n);
      else { n.pendingSince = t0; pending.add(k); }
      return;
    }
    t.latest = a;
    if (a.status === "ACTIVE") {
      t.pendingSince = undefined;
      pending.delete(k);
      if (t.reported?.status !== "ACTIVE") report(k, t);
      return;
    }
    if (t.reported?.status === a.status) { t.pendingSince = undefined; pending.delete(k); return; }
    // Not ACTIVE: held from the first such sighting, whatever it flips
    // between meanwhile; the latest is what gets reported.
    if (t.pendingSince === undefined) t.pendingSince = t0;
    pending.add(k);
  }

  return {
    epoch,
    /** Recompute the named ports (id, host) from `view`; a port no longer in it is forgotten. */
    touch(view: Ml2View, ports: Iterable<{ id: string; host: string }>): void {
      const t0 = now();
      for (const { id, host } of ports) {
        const has = view.endpointsByPort.get(id)?.some((x) => x.endpoint.host === host);
        consider(has ? portAnswer(view, id, host) : undefined, id, host, t0);
      }
      this.tick();
    },
    /** Reports the DOWN/ERROR that have lasted `holdMs` (only pending ports are looked at). */
    tick(): void {
      const t0 = now();
      for (const k of [...pending]) {
        const t = tracked.get(k)!;
        if (t.pendingSince !== undefined && t0 - t.pendingSince >= o.holdMs) report(k, t);
      }
    },
    /** While the view is not live, holds stop counting: no DOWN from stale data. */
    freeze(): void {
      for (const k of pending) tracked.get(k)!.pendingSince = undefined;
    },
    /** The view live again: pending holds count from now. */
    thaw(): void {
      const t0 = now();
      for (const k of pending) tracked.get(k)!.pendingSince ??= t0;
    },
    /** The live entries after `after` (at most `limit`), in order. */
    since(readerEpoch: string | undefined, after: number, limit = 1_000): TransitionsPage {
      if (readerEpoch !== epoch || after > seq) return { epoch, seq: 0, transitions: [], reset: true };
      let lo = 0, hi = log.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (log[mid]!.seq <= after) lo = mid + 1;
        else hi = mid;
      }
      const out: PortTransition[] = [];
      let last = after;
      for (let i = lo; i < log.length && out.length < limit; i++) {
        last = log[i]!.seq;
        if (isLive(log[i]!)) out.push(log[i]!);
      }
      return { epoch, seq: last, transitions: out, reset: false };
    },
    /** Ports tracked and entries held (for tests). */
    size: () => tracked.size,
    logLength: () => log.length,
  };
}

export type PortTransitions = ReturnType<typeof createPortTransitions>;
