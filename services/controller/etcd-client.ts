// The controller's etcd clients, with fault handling chosen for Palisade
// instead of etcd3's defaults. Every client is made here, so the policy is
// decided (and reviewed) in one place.
//
// etcd3's defaults are a per-host circuit breaker that opens for 5 s after 3
// consecutive "recoverable" errors, and 3 immediate retries. "Recoverable" there
// includes RESOURCE_EXHAUSTED: one write refused under the NOSPACE alarm was
// retried 3 times against the same answer and opened the breaker, after which
// *every* call — reads, lease grants — failed for 5 s with "circuit breaker is
// open". And no call had a deadline: with a member that stops answering (frozen
// process, partition: no TCP reset), calls routed to it hung forever.
//
// What we use instead:
// - Retry (global): only transient failures — the member is unreachable or
//   has no leader (UNAVAILABLE), a call deadline passed, the call was cancelled
//   because its channel was reset, or etcd asks to slow down ("too many
//   requests"). Each retry goes to another member (etcd3 walks a shuffled host
//   list). Exponential backoff with jitter, bounded: model ≤ 5 retries
//   (≤ ~1.6 s of waiting), status ≤ 1 (status is rewritten anyway; it must not
//   pile up behind an outage). Retrying a write is safe: every model write is a
//   transaction guarded by compares on what it read, so a write that did commit
//   before its answer was lost fails its compare and is re-decided (as a no-op).
//   Answers that will not change by asking again (NOSPACE, too many operations,
//   request too large, permission) are never retried.
// - Breaker (per host), only with several endpoints: with one endpoint there is
//   no other member to go to, and opening only adds refusals after etcd is back.
//   It counts only failures of the member itself (transport UNAVAILABLE,
//   deadline) — not "no leader"/"leader changed", which every member says during
//   an election — opens after 2 consecutive ones and half-opens after 1 s,
//   doubling up to 30 s while the member stays dead.
// - Deadlines on unary calls: 2 s for point operations and transactions plus
//   1 ms per operation in a transaction (a 5,000-document apply gets 7 s);
//   prefix reads (the model load, lists) 60 s. Streams (watch, lease keepalive)
//   have none.
// - gRPC keepalive (10 s, 5 s timeout) so a watch on a member that went silent
//   is noticed and re-established on another member. etcd refuses pings more
//   often than every 5 s (--grpc-keepalive-min-time), so this is the floor.
import { ConsecutiveBreaker, ExponentialBackoff, type IBackoff, circuitBreaker, handleWhen, isBrokenCircuitError, noop, retry } from "cockatiel";
import { Etcd3, GRPCCancelledError, GRPCDeadlineExceededError, GRPCUnavailableError, type IOptions } from "etcd3";

export type EtcdClientPurpose = "model" | "status";

export interface EtcdClientOptions {
  /** Full URLs (http:// or https://). */
  endpoints: string[];
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

/** The policy of one purpose, exported for tests and documentation. */
export const ETCD_CLIENT_POLICY = {
  model: { retries: 5, backoffInitialMs: 50, backoffMaxMs: 800 },
  status: { retries: 1, backoffInitialMs: 100, backoffMaxMs: 100 },
  breaker: { consecutiveFailures: 2, halfOpenAfterMs: 1_000, halfOpenMaxMs: 30_000 },
  deadline: { unaryMs: 2_000, perTxnOpMs: 1, prefixReadMs: 60_000 },
  keepalive: { timeMs: 10_000, timeoutMs: 5_000 },
  watchBackoff: { initialMs: 100, maxMs: 5_000 },
} as const;

/** The member itself failed (not an answer from it): counted by its breaker. */
export function isMemberFailure(err: Error): boolean {
  if (err instanceof GRPCDeadlineExceededError) return true;
  // etcd's own UNAVAILABLE answers ("etcdserver: no leader", "leader changed",
  // "request timed out") come from a live member during an election.
  return err instanceof GRPCUnavailableError && !err.message.includes("etcdserver:");
}

/** Worth asking again (another member, a moment later). */
export function isTransientEtcdError(err: Error): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError
    || err instanceof GRPCCancelledError || isBrokenCircuitError(err)
    || err.message.includes("etcdserver: too many requests");
}

export function createEtcdClient(options: EtcdClientOptions, purpose: EtcdClientPurpose): Etcd3 {
  const p = ETCD_CLIENT_POLICY;
  const r = p[purpose];
  const severalMembers = options.endpoints.length > 1;
  const opts: IOptions = {
    hosts: options.endpoints,
    grpcOptions: {
      // loadAll() reads the whole model in one range: ~30 MiB at 100,000
      // endpoints, far above grpc-js's 4 MiB default receive limit.
      "grpc.max_receive_message_length": 1024 * 1024 * 1024,
      "grpc.keepalive_time_ms": p.keepalive.timeMs,
      "grpc.keepalive_timeout_ms": p.keepalive.timeoutMs,
    },
    defaultCallOptions: (ctx) => {
      if (ctx.isStream) return {};
      const params = ("params" in ctx ? ctx.params : undefined) as { range_end?: unknown; success?: unknown[]; failure?: unknown[] } | undefined;
      if (ctx.service === "KV" && ctx.method === "range" && params?.range_end) return { deadline: Date.now() + p.deadline.prefixReadMs };
      const ops = (params?.success?.length ?? 0) + (params?.failure?.length ?? 0);
      return { deadline: Date.now() + p.deadline.unaryMs + ops * p.deadline.perTxnOpMs };
    },
    faultHandling: {
      host: () => (severalMembers
        ? circuitBreaker(handleWhen(isMemberFailure), {
          halfOpenAfter: new ExponentialBackoff({ initialDelay: p.breaker.halfOpenAfterMs, maxDelay: p.breaker.halfOpenMaxMs }),
          breaker: new ConsecutiveBreaker(p.breaker.consecutiveFailures),
        })
        : noop),
      global: retry(handleWhen(isTransientEtcdError), {
        maxAttempts: r.retries,
        backoff: new ExponentialBackoff({ initialDelay: r.backoffInitialMs, maxDelay: r.backoffMaxMs }),
      }),
      // etcd3 types this as an IBackoff but calls .next() on it to start each
      // reconnect sequence (its own default is an ExponentialBackoff factory).
      watchBackoff: new ExponentialBackoff({ initialDelay: p.watchBackoff.initialMs, maxDelay: p.watchBackoff.maxMs }) as unknown as IBackoff<unknown>,
    },
    ...(options.tls ? { credentials: { rootCertificate: options.tls.ca, certChain: options.tls.cert, privateKey: options.tls.key } } : {}),
  };
  return new Etcd3(opts);
}
