// Who may call what, in one table, enforced before any handler runs.
// (Identity comes from the client certificate: see runtime/tls.ts.)
//
// The sync stream is open to role host only; that the certificate names the
// host said in the hello is checked by the sync service, which sees the hello.
// Health and reflection stay open to any client that passed the TLS handshake
// (which already needs a certificate from our CA).
import { decidedStatus } from "../runtime/grpc-server.js";
import { ApiError } from "../contract/errors.js";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { peerIdentity, type Identity, type Role } from "../runtime/tls.js";
import type { PolicyServiceServer } from "../gen/palisade/policy/v1/policy.js";
import type { StatusServiceServer } from "../gen/palisade/status/v1/status.js";
import type { DataplaneSyncServiceServer } from "../gen/palisade/sync/v1/sync.js";
import type { FlowServiceServer } from "../gen/palisade/flow/v1/flow.js";

const READ: readonly Role[] = ["admin", "reader"];
const WRITE: readonly Role[] = ["admin"];

export const POLICY_ACCESS: Record<keyof PolicyServiceServer, readonly Role[]> = {
  apply: WRITE,
  delete: WRITE,
  getProfile: READ,
  getEndpoint: READ,
  listProfiles: READ,
  listEndpoints: READ,
  getRevision: READ,
  trace: READ,
};

export const STATUS_ACCESS: Record<keyof StatusServiceServer, readonly Role[]> = {
  getStatus: READ,
  watchStatus: READ,
};

export const FLOW_ACCESS: Record<keyof FlowServiceServer, readonly Role[]> = {
  list: READ,
  watch: READ,
};

export const SYNC_ACCESS: Record<keyof DataplaneSyncServiceServer, readonly Role[]> = {
  sync: ["host"],
};

export type Denied = (method: string, reason: string) => void;

/** Whether `who` may call a method allowed to `roles`; the refusal reason otherwise. */
export function checkAccess(who: Identity | string, roles: readonly Role[], method: string): string | undefined {
  if (typeof who === "string") return who;
  if (!roles.includes(who.role)) return `role '${who.role}' (${who.name}) may not call ${method}`;
  return undefined;
}

type AnyCall = { getAuthContext(): { sslPeerCertificate?: import("node:tls").PeerCertificate } | null; emit(ev: "error", e: unknown): unknown };

/**
 * Wraps every handler of a service implementation with the access check.
 * Unary handlers answer PERMISSION_DENIED through their callback; streaming
 * ones end the call with it.
 */
export function guardService<T extends object>(service: string, impl: T, access: Record<keyof T, readonly Role[]>, logger: Logger, onDenied?: Denied): T {
  const out = {} as Record<string, unknown>;
  for (const [name, handler] of Object.entries(impl) as [string, (...a: unknown[]) => unknown][]) {
    const roles = access[name as keyof T];
    const method = `${service}/${name}`;
    out[name] = (call: AnyCall, callback?: (err: Partial<grpc.StatusObject>) => void) => {
      const reason = checkAccess(peerIdentity(call), roles ?? [], method);
      if (reason === undefined) return handler(call, callback);
      logger.warn({ method, reason }, "permission denied");
      onDenied?.(method, reason);
      const err = decidedStatus(new ApiError("PERMISSION_DENIED", `permission denied: ${reason}`));
      if (callback) callback(err);
      else call.emit("error", err);
      return undefined;
    };
  }
  return out as T;
}
