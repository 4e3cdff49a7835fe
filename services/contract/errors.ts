// One error model across the wire (DESIGN §3.7).
//
// Server side, a failed request is a ValidationError (model: issues by
// document and field) or an ApiError (a gRPC status code and a one-line
// reason); grpc-server.ts toServiceError turns either into a status whose
// details are the one line and whose trailing metadata "palisade-error-bin"
// carries the structure (palisade.errors.v1.ErrorDetail). Client side, every
// failed call is one type, RpcError, rebuilt from that status: the code, the
// line, the reason, and the validation issues field by field — the same
// ValidationIssue values the server had (`validation()` gives back the
// ValidationError itself). Without the metadata the controller did not
// answer: the transport failed.
import * as grpc from "@grpc/grpc-js";
import { ErrorDetail } from "../gen/palisade/errors/v1/errors.js";
import { ValidationError, type ValidationIssue } from "../model/index.js";

export type ApiErrorCode =
  | "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "ABORTED" | "UNAVAILABLE" | "INTERNAL" | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED";

/** What the server throws for a request it refuses (other than validation). */
export class ApiError extends Error {
  /**
   * `etcdClass` marks errors that came from etcd (controller/etcd-errors.ts):
   * counted by class in metrics, and the reason clients see.
   */
  constructor(readonly code: ApiErrorCode, message: string, readonly etcdClass?: string) {
    super(message);
    this.name = "ApiError";
  }
}

/** Trailing metadata key of the structured detail (binary: "-bin"). */
export const ERROR_DETAIL_METADATA = "palisade-error-bin";

/** Bounds of what one status carries, whatever the request. */
export const MAX_VIOLATIONS = 100;
const MAX_TEXT = 512;
const clip = (s: string) => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT - 1)}…` : s);

/** The structure of a server-side error, encoded for the trailing metadata. */
export function errorDetailMetadata(err: ValidationError | ApiError): grpc.Metadata {
  const issues = err instanceof ValidationError ? err.issues : [];
  const detail: ErrorDetail = {
    reason: err instanceof ValidationError ? "validation" : err.etcdClass ? `etcd-${err.etcdClass}` : "",
    violations: issues.slice(0, MAX_VIOLATIONS).map((i) => ({ document: clip(i.document), field: clip(i.field), description: clip(i.reason) })),
    omittedViolations: Math.max(0, issues.length - MAX_VIOLATIONS),
  };
  const md = new grpc.Metadata();
  md.set(ERROR_DETAIL_METADATA, Buffer.from(ErrorDetail.encode(detail).finish()));
  return md;
}

function errorDetailOf(md: grpc.Metadata | undefined): ErrorDetail | undefined {
  const v = md?.get(ERROR_DETAIL_METADATA)[0];
  if (!v || typeof v === "string") return undefined;
  try {
    return ErrorDetail.decode(v);
  } catch {
    return undefined;
  }
}

/** Every failed call, as the client sees it. */
export class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    /** From the server's ErrorDetail: "validation", "etcd-nospace", …; "" when none. */
    readonly reason = "",
    readonly issues: readonly ValidationIssue[] = [],
    /** The controller answered (false: it could not be reached, or the transport failed). */
    readonly fromServer = false,
    readonly omittedIssues = 0,
  ) {
    super(message);
    this.name = "RpcError";
  }

  /** The server's ValidationError, rebuilt, when the call was refused for invalid input. */
  validation(): ValidationError | undefined {
    return this.code === grpc.status.INVALID_ARGUMENT && this.issues.length ? new ValidationError([...this.issues]) : undefined;
  }
}

/**
 * Rebuilds the client's error from a failed call's status (unary or stream).
 * `target` names the controller for "cannot reach" messages.
 */
export function rpcErrorOf(err: Partial<grpc.StatusObject> & { message?: string }, target: string): RpcError {
  const code = err.code ?? grpc.status.UNKNOWN;
  const detail = errorDetailOf(err.metadata);
  const details = err.details || err.message || grpc.status[code] || "unknown error";
  const issues = (detail?.violations ?? []).map((v) => ({ document: v.document, field: v.field, reason: v.description }));
  const message = code === grpc.status.PERMISSION_DENIED
    ? `${details} (the certificate's role decides: admin changes policy, reader reads)`
    : (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED) && !detail
    ? `cannot reach the controller at ${target}: ${details}`
    : details;
  return new RpcError(code, message, detail?.reason ?? "", issues, detail !== undefined, detail?.omittedViolations ?? 0);
}

/**
 * The sync stream's boundary error: a message the driver cannot interpret or
 * trust (unknown family or table, a name or member outside what Palisade
 * owns). The driver drops the stream and starts over from a fresh snapshot.
 */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}
