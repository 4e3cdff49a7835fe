// etcd's failures, classified once for the API boundary. Before this, etcd
// down, out of space, or a transaction over its limits all reached users as
// gRPC INTERNAL "internal error" — which also tells clients not to retry or
// fail over. Each class has one gRPC code and a one-line reason that says
// what to do:
//
//   unavailable        UNAVAILABLE        etcd unreachable, no leader, deadline: retry / fail over
//   nospace            RESOURCE_EXHAUSTED NOSPACE alarm; deletions still work; runbook in README
//   too-many-ops       FAILED_PRECONDITION over etcd's --max-txn-ops
//   request-too-large  FAILED_PRECONDITION over etcd's --max-request-bytes
//
// The last two are FAILED_PRECONDITION, not INVALID_ARGUMENT: the request is
// valid by Palisade's documented limits (≤ 5,000 documents per batch); it
// fails because of how this etcd is configured, and succeeds unchanged once
// the operator raises the limit (gRPC: INVALID_ARGUMENT is for arguments that
// are wrong "regardless of the state of the system"). Clients must not retry
// either as is; they may split the batch.
import { isBrokenCircuitError } from "cockatiel";
import { GRPCDeadlineExceededError, GRPCUnavailableError } from "etcd3";
import { ApiError } from "../contract/errors.js";
import { LIMITS } from "../model/index.js";

export type EtcdErrorClass = "unavailable" | "nospace" | "too-many-ops" | "request-too-large";

/** What etcd had to do for the request, for the message. */
export interface EtcdRequestSize {
  /** Operations in the largest part (compares or requests) of the transaction. */
  operations?: number;
  /** Bytes of keys and values written. */
  bytes?: number;
  /** etcd's detected --max-txn-ops, when known. */
  maxTxnOps?: number;
}

/** etcd's txn-ops limit Palisade needs: the largest batch plus the revision key. */
export const REQUIRED_TXN_OPS = LIMITS.documentsPerBatch + 1;

export const RUNBOOK = "README \"etcd out of space\"";

export function classifyEtcdError(err: unknown): EtcdErrorClass | undefined {
  if (!(err instanceof Error) || err instanceof ApiError) return undefined;
  const m = err.message;
  if (m.includes("database space exceeded")) return "nospace";
  if (m.includes("too many operations in txn request")) return "too-many-ops";
  // etcd answers "request is too large" up to its limit plus gRPC overhead;
  // beyond that gRPC itself refuses the message ("larger than max").
  if (m.includes("request is too large") || (m.includes("RESOURCE_EXHAUSTED") && m.includes("larger than max"))) return "request-too-large";
  if (err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError || isBrokenCircuitError(err)) return "unavailable";
  if (err.message.includes("etcdserver: too many requests")) return "unavailable";
  return undefined;
}

/** "14 UNAVAILABLE: No connection established…" -> "No connection established…", on one line. */
function reason(err: Error): string {
  return err.message.replace(/^\w*Error: /, "").replace(/^\d+ [A-Z_]+: /, "").replace(/\s+/g, " ").trim();
}

/** The ApiError a client sees for an etcd failure; anything else is returned unchanged. */
export function toApiError(err: unknown, size: EtcdRequestSize = {}): unknown {
  const cls = classifyEtcdError(err);
  if (!cls) return err;
  const e = err as Error;
  switch (cls) {
    case "unavailable":
      return new ApiError("UNAVAILABLE", `etcd unavailable: ${isBrokenCircuitError(e) ? "every endpoint failed recently (client circuit open)" : reason(e)}`, cls);
    case "nospace":
      return new ApiError("RESOURCE_EXHAUSTED",
        `etcd is out of space (NOSPACE alarm, --quota-backend-bytes reached): writes are refused, deletions still work; free space with compaction and defragmentation, then disarm the alarm (${RUNBOOK})`, cls);
    case "too-many-ops": {
      const ops = size.operations !== undefined ? `this write needs ${size.operations} operations in one transaction` : "the transaction has too many operations";
      const lim = size.maxTxnOps !== undefined ? ` (${size.maxTxnOps})` : "";
      return new ApiError("FAILED_PRECONDITION",
        `etcd refused the transaction: ${ops}, more than etcd's --max-txn-ops${lim}; run etcd with --max-txn-ops ${REQUIRED_TXN_OPS} or more, or apply fewer documents per batch`, cls);
    }
    case "request-too-large": {
      const b = size.bytes !== undefined ? `this write is ${size.bytes} bytes` : "the request is too large";
      return new ApiError("FAILED_PRECONDITION",
        `etcd refused the transaction: ${b}, more than etcd's --max-request-bytes; raise --max-request-bytes (deploy/CONFIGURATION.md) or apply fewer documents per batch`, cls);
    }
  }
}
