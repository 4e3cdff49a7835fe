// Port status changes after a port went ACTIVE (DESIGN §11.11): Palisade's
// view of a port (portAnswer) as a numbered feed that the ML2 driver in
// neutron-server reads and writes into Neutron (DOWN / ERROR, and ACTIVE
// again). Pure: told the view's changes, asked what happened since a
// sequence number.
//
// - Incremental: `touch` names the ports whose inputs changed (a host's
//   status: all its ports; an endpoint's status or the endpoint itself: that
//   port); only those are recomputed.
// - Damped: DOWN or ERROR is reported once it has lasted `holdMs` (a
//   controller restart or a driver reconnecting must not flap every port of
//   a cloud); ACTIVE is reported at once.
// - Bounded: the feed keeps the last `capacity` changes. A reader further
//   behind, or from before a restart of the adapter (another epoch), is told
//   `reset`: it then reads the ports it cares about in full
//   (POST /v1/ports/status).
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
  /** The last sequence number given out (read on from here). */
  seq: number;
  transitions: PortTransition[];
  /** The reader missed changes (too far behind, or another epoch): read the ports' status in full. */
  reset: boolean;
}

interface Tracked {
  /** What was last reported (or first seen). */
  reported: NeutronPortStatus;
  /** Not reported yet: DOWN/ERROR since this time. */
  pending?: { status: NeutronPortStatus; detail: string; since: number };
}

const keyOf = (id: string, host: string) => `${id}\u0000${host}`;

export function createPortTransitions(o: { holdMs: number; capacity?: number; now?: () => number }) {
  const capacity = o.capacity ?? 10_000;
  const now = o.now ?? Date.now;
  const epoch = randomUUID();
  const tracked = new Map<string, Tracked>();
  const log: PortTransition[] = [];
  let seq = 0;

  const record = (a: PortAnswer) => {
    log.push({ seq: ++seq, id: a.id, host: a.host, status: a.status, detail: a.detail });
    if (log.length > capacity) log.splice(0, log.length - capacity);
  };

  /**
   * A port's answer now. A port first seen is taken as ACTIVE in Neutron (a
   * new port is held DOWN by its block instead; the driver ignores reports
   * for blocked ports), so after a restart of the adapter a port that is not
   * ACTIVE in Palisade is reported again once it has lasted `holdMs`.
   */
  function consider(a: PortAnswer | undefined, id: string, host: string): void {
    const k = keyOf(id, host);
    if (!a) { tracked.delete(k); return; }
    let t = tracked.get(k);
    if (!t) tracked.set(k, (t = { reported: "ACTIVE" }));
    if (a.status === t.reported) { t.pending = undefined; return; }
    if (a.status === "ACTIVE") {
      t.reported = "ACTIVE";
      t.pending = undefined;
      record(a);
      return;
    }
    if (t.pending?.status !== a.status) t.pending = { status: a.status, detail: a.detail, since: now() };
  }

  return {
    epoch,
    /** Recompute the named ports (id, host) from `view`; a port no longer in the view is forgotten. */
    touch(view: Ml2View, ports: Iterable<{ id: string; host: string }>): void {
      for (const { id, host } of ports) {
        const has = view.endpointsByPort.get(id)?.some((x) => x.endpoint.host === host);
        consider(has ? portAnswer(view, id, host) : undefined, id, host);
      }
      this.tick();
    },
    /** Reports the DOWN/ERROR that have lasted `holdMs`. */
    tick(): void {
      const t0 = now();
      for (const [k, t] of tracked) {
        if (!t.pending || t0 - t.pending.since < o.holdMs) continue;
        const [id, host] = k.split("\u0000") as [string, string];
        t.reported = t.pending.status;
        record({ id, host, status: t.pending.status, detail: t.pending.detail, programmed: false });
        t.pending = undefined;
      }
    },
    /** What happened after `after` in `readerEpoch` (at most `limit`). */
    since(readerEpoch: string | undefined, after: number, limit = 1_000): TransitionsPage {
      const oldest = log[0]?.seq ?? seq + 1;
      if (readerEpoch !== epoch || after > seq || after < oldest - 1) return { epoch, seq, transitions: [], reset: true };
      const out = log.filter((x) => x.seq > after).slice(0, limit);
      return { epoch, seq: out.length ? out.at(-1)!.seq : seq, transitions: out, reset: false };
    },
    /** Ports tracked (for metrics and tests). */
    size: () => tracked.size,
  };
}

export type PortTransitions = ReturnType<typeof createPortTransitions>;
