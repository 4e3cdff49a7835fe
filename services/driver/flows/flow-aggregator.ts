// Aggregation of flow reports (DESIGN §6.12): within one window, reports of
// the same flow at the same decision point become one record with a packet
// count. Bounded: at most `maxKeys` records per window; what does not fit
// is counted as dropped, never silently lost and never queued.
import type { FlowTuple } from "./nflog-pcap.js";

export interface FlowPoint extends FlowTuple {
  endpointKey: string;
  interfaceName: string;
  direction: "inbound" | "outbound";
  verdict: "allow" | "deny";
  decision: string;
  chain: string;
  /** Rule index, or position in profile_ids for a missing profile, or the policy epoch for "ended"; -1 otherwise. */
  index: number;
  /** Decision "ended": the revision that advanced that epoch, when known. */
  revision?: number;
}

export interface FlowRecord extends FlowPoint {
  packets: number;
  firstSeenUnixMs: number;
  lastSeenUnixMs: number;
}

function keyOf(p: FlowPoint): string {
  return [p.endpointKey, p.interfaceName, p.direction, p.src, p.dst, p.protocol, p.srcPort ?? "", p.dstPort ?? "", p.icmpType ?? "", p.icmpCode ?? "", p.verdict, p.decision, p.chain, p.index, p.revision ?? ""].join("|");
}

export class FlowAggregator {
  private window = new Map<string, FlowRecord>();
  /** Reports that did not fit in a full window. */
  dropped = 0;

  constructor(private readonly maxKeys = 4096) {}

  get size(): number {
    return this.window.size;
  }

  /** Adds one reported packet; false when the window is full (counted in `dropped`). */
  add(p: FlowPoint, timeMs: number): boolean {
    const k = keyOf(p);
    const r = this.window.get(k);
    if (r) {
      r.packets++;
      if (timeMs < r.firstSeenUnixMs) r.firstSeenUnixMs = timeMs;
      if (timeMs > r.lastSeenUnixMs) r.lastSeenUnixMs = timeMs;
      return true;
    }
    if (this.window.size >= this.maxKeys) {
      this.dropped++;
      return false;
    }
    this.window.set(k, { ...p, packets: 1, firstSeenUnixMs: timeMs, lastSeenUnixMs: timeMs });
    return true;
  }

  /** Ends the window: its records, oldest first; the next window starts empty. */
  drain(): FlowRecord[] {
    const out = [...this.window.values()].sort((a, b) => a.firstSeenUnixMs - b.firstSeenUnixMs);
    this.window = new Map();
    return out;
  }
}
