// One sync: read what Palisade holds, plan (reconcile.ts), write the plan as
// one PolicyService.Apply — creates, updates and deletes in one etcd
// transaction, each guarded by the revision it was planned from. A second
// sync of the same input finds nothing to do and writes nothing.
//
// A plan larger than one API batch (5,000 objects: a first import of a big
// cloud) is written in several transactions, in the plan's order (profiles,
// endpoints, endpoint deletions, profile deletions), so every intermediate
// state fails closed. Retries (a concurrent change between read and write)
// re-read and re-plan: decided here, nowhere else.
import * as grpc from "@grpc/grpc-js";
import { call, RpcError } from "../api/clients.js";
import { documentToPb, endpointFromPb, profileFromPb, refToPb } from "../api/model-wire.js";
import type { PolicyServiceClient } from "../gen/palisade/policy/v1/policy.js";
import { LIMITS, type ModelObject } from "../model/index.js";
import { planReconcile, type PlannedDelete, type PlannedWrite, type StoredObject } from "./reconcile.js";
import type { TranslateResult } from "./translate.js";

export interface SyncReport {
  created: number;
  updated: number;
  deleted: number;
  unchanged: number;
  /** Ports that are not endpoints (network-owned, unbound, …). */
  skipped: number;
  /** Model revision after the sync (unchanged when nothing was written). */
  revision: number;
  transactions: number;
  dryRun: boolean;
  /** What would be / was written, as "create profile X" lines (dry runs print them). */
  changes: string[];
}

/** The adapter's one error type: a sync that must not (or could not) be written. */
export class AdapterError extends Error {
  constructor(message: string, readonly details: string[] = []) {
    super(message);
    this.name = "AdapterError";
  }
}

const MAX_ATTEMPTS = 3;

async function readCurrent(policy: PolicyServiceClient): Promise<StoredObject[]> {
  const [profiles, endpoints] = await Promise.all([
    call(policy, policy.listProfiles, {}),
    call(policy, policy.listEndpoints, { host: "" }),
  ]);
  return [
    ...profiles.profiles.map((p): StoredObject => ({ object: { kind: "Profile", profile: profileFromPb(p) }, revision: p.revision })),
    ...endpoints.endpoints.map((e): StoredObject => ({ object: { kind: "Endpoint", endpoint: endpointFromPb(e) }, revision: e.revision })),
  ];
}

function name(o: ModelObject): string {
  return o.kind === "Profile" ? `profile ${o.profile.id}` : `endpoint ${o.endpoint.host}/${o.endpoint.orchestrator}/${o.endpoint.workload}/${o.endpoint.id}`;
}

/**
 * Refuses inputs that would wipe out what the adapter manages for the wrong
 * reason: ports listed without admin rights carry no binding:host_id, so
 * every endpoint would look unbound and be deleted.
 */
function guardInput(result: TranslateResult): void {
  const adminOnly = result.skipped.filter((s) => s.reason.startsWith("binding:host_id is absent"));
  if (adminOnly.length > 0 && !result.objects.some((o) => o.kind === "Endpoint")) {
    throw new AdapterError(`none of the ${adminOnly.length} port(s) has binding:host_id: the ports were listed without admin rights; refusing to sync (it would delete every endpoint)`);
  }
}

export async function syncOnce(policy: PolicyServiceClient, result: TranslateResult, opts: { dryRun?: boolean; maxBatch?: number } = {}): Promise<SyncReport> {
  guardInput(result);
  const maxBatch = opts.maxBatch ?? LIMITS.documentsPerBatch;
  for (let attempt = 1; ; attempt++) {
    const plan = planReconcile(result.objects, await readCurrent(policy));
    if (plan.conflicts.length) throw new AdapterError(`refusing to sync: ${plan.conflicts.length} object(s) not owned by the adapter are in the way`, plan.conflicts);
    const report: SyncReport = {
      created: plan.writes.filter((w) => w.action === "create").length,
      updated: plan.writes.filter((w) => w.action === "update").length,
      deleted: plan.deletes.length,
      unchanged: plan.unchanged,
      skipped: result.skipped.length,
      revision: 0,
      transactions: 0,
      dryRun: !!opts.dryRun,
      changes: [
        ...plan.writes.map((w) => `${w.action} ${name(w.object)}`),
        ...plan.deletes.map((d) => `delete ${d.ref.kind === "Profile" ? `profile ${d.ref.id}` : `endpoint ${d.ref.key.host}/${d.ref.key.orchestrator}/${d.ref.key.workload}/${d.ref.key.id}`}`),
      ],
    };
    if (opts.dryRun || (plan.writes.length === 0 && plan.deletes.length === 0)) {
      report.revision = (await call(policy, policy.getRevision, {})).revision;
      return report;
    }
    const steps: (PlannedWrite | PlannedDelete)[] = [...plan.writes, ...plan.deletes];
    try {
      for (let i = 0; i < steps.length; i += maxBatch) {
        const chunk = steps.slice(i, i + maxBatch);
        const writes = chunk.filter((s): s is PlannedWrite => "object" in s);
        const deletes = chunk.filter((s): s is PlannedDelete => "ref" in s);
        const r = await call(policy, policy.apply, {
          documents: writes.map((w) => ({ ...documentToPb(w.object), expectedRevision: w.expectedRevision })),
          deletes: deletes.map((d) => ({ object: refToPb(d.ref), expectedRevision: d.expectedRevision })),
        });
        report.revision = r.revision;
        report.transactions++;
      }
      return report;
    } catch (e) {
      const retry = e instanceof RpcError && (e.code === grpc.status.FAILED_PRECONDITION || e.code === grpc.status.ABORTED);
      if (!retry || attempt >= MAX_ATTEMPTS) throw e;
      // Someone changed what we planned from: re-read and re-plan.
    }
  }
}
