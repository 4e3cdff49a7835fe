// One sync: read what Palisade holds, plan (reconcile.ts), write the plan as
// one PolicyService.Apply — creates, updates and deletes in one etcd
// transaction, each guarded by the revision it was planned from. A second
// sync of the same input finds nothing to do and writes nothing.
//
// A plan larger than one API batch (5,000 objects or ~8 MiB: a first import
// of a big cloud, or catching up after an outage) is written in several
// transactions in the order of reconcile.ts (profiles written, endpoints
// deleted, updated, created, profiles deleted). Retries (a concurrent change
// between read and write) re-read and re-plan: decided here, nowhere else.
//
// Guards: ports listed without admin rights are refused. A sync that would
// delete most of the endpoints the adapter manages (at least MASS_DELETE_MIN)
// — a wrong file, a project-scoped token, a Neutron hiccup — applies
// everything else and holds back only those deletions, unless
// allowMassDelete says that is really meant.
import * as grpc from "@grpc/grpc-js";
import { call, RpcError } from "../contract/clients.js";
import { documentToPb, endpointFromPb, profileFromPb, refToPb } from "../contract/model-wire.js";
import { Document, ObjectRefPb, type PolicyServiceClient } from "../contract/policy.js";
import { LIMITS, endpointKeyString, type ModelObject } from "../model/index.js";
import { isOwned, planReconcile, stepsInOrder, type PlannedDelete, type PlannedWrite, type ReconcilePlan, type StoredObject } from "./reconcile.js";
import { SKIP_NO_BINDING, type TranslateResult } from "./translate.js";

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
  /** Endpoint deletions held back by the mass-deletion guard (keys), until allowMassDelete. */
  heldBack: string[];
  /** Owned endpoints before the sync (what heldBack is a share of). */
  owned: number;
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

/** Bytes per transaction, well under the controller's 16 MiB receive limit. */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * A sync deleting more than this share of the owned endpoints, and at least
 * MASS_DELETE_MIN of them, is a mass deletion. Below the minimum it never is:
 * deleting the last VM of a small cloud ("1 of 1") is ordinary.
 */
const MASS_DELETE_SHARE = 0.5;
export const MASS_DELETE_MIN = 10;
/** Set on an endpoint whose deletion is held back (palisade-openstack status shows it). */
export const HELD_LABEL = "palisade.io/deletion-held";

/**
 * The guard holds back only the endpoint deletions (DESIGN §11.4): a wrong
 * file, a project-scoped token or a Neutron hiccup must not drop every VM,
 * but a refusal must not freeze everything else either — rule changes
 * (revocations included), group changes, creations and updates still go.
 * Held-back endpoints keep their profiles (their deletion is held back too),
 * are marked with HELD_LABEL, and are counted in the report.
 */
function holdBackMassDelete(plan: ReconcilePlan, current: StoredObject[]): string[] {
  const owned = current.filter((c) => c.object.kind === "Endpoint" && isOwned(c.object)).length;
  const deleting = plan.deletes.filter((d) => d.ref.kind === "Endpoint");
  if (deleting.length < MASS_DELETE_MIN || deleting.length <= owned * MASS_DELETE_SHARE) return [];
  const held = new Set(deleting.map((d) => (d.ref.kind === "Endpoint" ? endpointKeyString(d.ref.key) : "")));
  const keep = new Set<string>();
  for (const c of current) {
    if (c.object.kind !== "Endpoint" || !held.has(endpointKeyString(c.object.endpoint))) continue;
    for (const p of c.object.endpoint.profileIds) keep.add(p);
    // Marked once, so that status shows it; the write is guarded like any other.
    if (c.object.endpoint.labels[HELD_LABEL] !== "true") {
      plan.writes.push({
        object: { kind: "Endpoint", endpoint: { ...c.object.endpoint, labels: { ...c.object.endpoint.labels, [HELD_LABEL]: "true" } } },
        expectedRevision: c.revision, action: "update",
      });
    }
  }
  plan.deletes = plan.deletes.filter((d) => d.ref.kind === "Endpoint" ? false : !keep.has(d.ref.id));
  return [...held].sort();
}

function name(o: ModelObject): string {
  return o.kind === "Profile" ? `profile ${o.profile.id}` : `endpoint ${endpointKeyString(o.endpoint)}`;
}

/**
 * Refuses inputs that would wipe out what the adapter manages for the wrong
 * reason: ports listed without admin rights carry no binding:host_id, so
 * every endpoint would look unbound and be deleted.
 */
function guardInput(result: TranslateResult): void {
  const adminOnly = result.skipped.filter((s) => s.reason === SKIP_NO_BINDING);
  if (adminOnly.length > 0 && !result.objects.some((o) => o.kind === "Endpoint")) {
    throw new AdapterError(`none of the ${adminOnly.length} port(s) has binding:host_id: the ports were listed without admin rights; refusing to sync (it would delete every endpoint)`);
  }
}

export interface SyncOptions {
  dryRun?: boolean;
  /** Objects per transaction; default the API's batch limit (5,000). */
  maxBatch?: number;
  /** Apply endpoint deletions even when they are a mass deletion (otherwise held back). */
  allowMassDelete?: boolean;
}

export async function syncOnce(policy: PolicyServiceClient, result: TranslateResult, opts: SyncOptions = {}): Promise<SyncReport> {
  guardInput(result);
  const maxBatch = opts.maxBatch ?? LIMITS.documentsPerBatch;
  for (let attempt = 1; ; attempt++) {
    const current = await readCurrent(policy);
    const plan = planReconcile(result.objects, current);
    if (plan.conflicts.length) throw new AdapterError(`refusing to sync: ${plan.conflicts.length} object(s) not owned by the adapter are in the way`, plan.conflicts);
    const heldBack = opts.allowMassDelete ? [] : holdBackMassDelete(plan, current);
    const report: SyncReport = {
      created: plan.writes.filter((w) => w.action === "create").length,
      updated: plan.writes.filter((w) => w.action === "update").length,
      deleted: plan.deletes.length,
      unchanged: plan.unchanged,
      skipped: result.skipped.length,
      revision: 0,
      transactions: 0,
      dryRun: !!opts.dryRun,
      heldBack,
      owned: current.filter((c) => c.object.kind === "Endpoint" && isOwned(c.object)).length,
      changes: [
        ...plan.writes.map((w) => `${w.action} ${name(w.object)}`),
        ...plan.deletes.map((d) => `delete ${d.ref.kind === "Profile" ? `profile ${d.ref.id}` : `endpoint ${endpointKeyString(d.ref.key)}`}`),
      ],
    };
    if (opts.dryRun || (plan.writes.length === 0 && plan.deletes.length === 0)) {
      report.revision = (await call(policy, policy.getRevision, {})).revision;
      return report;
    }
    try {
      for (const chunk of chunks(stepsInOrder(plan), maxBatch)) {
        const r = await call(policy, policy.apply, { documents: chunk.documents, deletes: chunk.deletes });
        // Every deletion was planned from an existing object at a known
        // revision: all must go. A controller older than the `deletes` field
        // would silently ignore them.
        if (r.deleted !== chunk.deletes.length) {
          throw new AdapterError(`the controller deleted ${r.deleted} of ${chunk.deletes.length} object(s): is it older than this adapter (ApplyRequest.deletes)?`);
        }
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

interface Chunk {
  documents: Document[];
  deletes: { object: ObjectRefPb; expectedRevision: number }[];
}

/** Consecutive steps, at most maxBatch objects and ~MAX_BATCH_BYTES per chunk. */
function* chunks(steps: (PlannedWrite | PlannedDelete)[], maxBatch: number): Generator<Chunk> {
  let cur: Chunk = { documents: [], deletes: [] };
  let bytes = 0;
  for (const s of steps) {
    let size: number;
    let add: () => void;
    if ("object" in s) {
      const d: Document = { ...documentToPb(s.object), expectedRevision: s.expectedRevision };
      size = Document.encode(d).finish().length + 8;
      add = () => cur.documents.push(d);
    } else {
      const d = { object: refToPb(s.ref), expectedRevision: s.expectedRevision };
      size = ObjectRefPb.encode(d.object).finish().length + 16;
      add = () => cur.deletes.push(d);
    }
    const count = cur.documents.length + cur.deletes.length;
    if (count > 0 && (count >= maxBatch || bytes + size > MAX_BATCH_BYTES)) {
      yield cur;
      cur = { documents: [], deletes: [] };
      bytes = 0;
    }
    add();
    bytes += size;
  }
  if (cur.documents.length + cur.deletes.length > 0) yield cur;
}
