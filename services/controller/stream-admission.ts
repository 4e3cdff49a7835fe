// Admission of sync streams (DESIGN §9.3): what one host, or a reconnect
// storm, may cost this replica. A hello makes work — a snapshot of the
// host's state, a host record — so hellos are rate-limited, overall and per
// host name; streams that never say hello are capped; a host keeps at most
// `maxStreamsPerHost` streams (a quick reconnect overlaps its old stream),
// the newest winning.
//
// Refusals carry UNAVAILABLE (retry later, with backoff): drivers already
// back off on any error, so a storm spreads itself out instead of piling up.

export interface AdmissionOptions {
  /** Hellos per second over all hosts (token bucket rate); default 200. */
  helloRate?: number;
  /** Burst of hellos over all hosts; default 400. */
  helloBurst?: number;
  /** Hellos per second for one host name; default 1. */
  hostHelloRate?: number;
  /** Burst for one host name; default 10. */
  hostHelloBurst?: number;
  /** Streams open without a hello yet; default 1,000. */
  maxPendingHellos?: number;
  now?: () => number;
}

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  /** A token is there to take (nothing spent). */
  available(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    return this.tokens >= 1;
  }

  take(now: number): boolean {
    if (!this.available(now)) return false;
    this.tokens -= 1;
    return true;
  }

  /** Full again (refilled by now): forgetting it loses nothing. */
  full(now: number): boolean {
    return this.tokens + ((now - this.last) / 1000) * this.rate >= this.burst;
  }
}

export type Refusal = { reason: "rate" | "host-rate" | "pending"; message: string };

export function createStreamAdmission(o: AdmissionOptions = {}) {
  const now = o.now ?? Date.now;
  const rate = o.helloRate ?? 200;
  const burst = o.helloBurst ?? 400;
  const hostRate = o.hostHelloRate ?? 1;
  const hostBurst = o.hostHelloBurst ?? 10;
  const maxPending = o.maxPendingHellos ?? 1_000;
  const global = new TokenBucket(rate, burst, now());
  const perHost = new Map<string, TokenBucket>();
  let pending = 0;

  /** Bounded memory: buckets that refilled completely carry no state worth keeping. */
  function prune(): void {
    if (perHost.size < 10_000) return;
    const t = now();
    for (const [h, b] of perHost) if (b.full(t)) perHost.delete(h);
  }

  return {
    /** A new stream (before its hello). Returns a refusal, or a release function for when the hello arrives or the stream ends. */
    open(): Refusal | (() => void) {
      if (pending >= maxPending) return { reason: "pending", message: `too many streams waiting for a hello (${maxPending}); retry later` };
      pending++;
      let released = false;
      return () => {
        if (!released) { released = true; pending--; }
      };
    },
    /** A hello from `host`: admitted, or refused with a reason. */
    hello(host: string): Refusal | undefined {
      const t = now();
      let b = perHost.get(host);
      if (!b) {
        prune();
        perHost.set(host, (b = new TokenBucket(hostRate, hostBurst, t)));
      }
      // The host's own budget is spent only when the shared one admits it too.
      if (!b.available(t)) return { reason: "host-rate", message: `host ${host} reconnects too often (more than ${hostBurst} in a burst, ${hostRate}/s sustained); retry later` };
      if (!global.take(t)) return { reason: "rate", message: `too many drivers connecting (more than ${rate}/s); retry later` };
      b.take(t);
      return undefined;
    },
    get pending() { return pending; },
  };
}

export type StreamAdmission = ReturnType<typeof createStreamAdmission>;
