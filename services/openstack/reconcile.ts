// Reconciliation plan: what the adapter must write so that the objects it
// owns equal what Neutron says — and nothing else is touched. Pure.
//
// Ownership is a mark, not a guess: profiles and endpoints carrying the label
// palisade.io/owner=openstack (endpoints also have orchestrator "openstack").
// An object the adapter would create but that exists unmarked belongs to
// someone else: that is a conflict, and the whole sync is refused rather than
// overwriting it. Owned objects Neutron no longer has are deleted.
//
// Every write carries the revision the plan was made from (0 = must not
// exist), so a concurrent change anywhere in the plan fails the transaction
// and the adapter re-plans instead of overwriting it blindly.
import { objectKey, toDocument, endpointKeyString, type ModelObject } from "../model/index.js";
import type { ObjectRef } from "../contract/object-ref.js";
import { ORCHESTRATOR, OWNER_LABEL, OWNER_VALUE } from "./translate.js";

export interface StoredObject {
  object: ModelObject;
  /** etcd mod revision as read. */
  revision: number;
}

export interface PlannedWrite {
  object: ModelObject;
  /** 0 when the object must not exist yet. */
  expectedRevision: number;
  action: "create" | "update";
}

export interface PlannedDelete {
  ref: ObjectRef;
  expectedRevision: number;
}

export interface ReconcilePlan {
  writes: PlannedWrite[];
  deletes: PlannedDelete[];
  unchanged: number;
  /** Objects the adapter would overwrite but does not own: the sync must be refused. */
  conflicts: string[];
}

export function isOwned(o: ModelObject): boolean {
  if (o.kind === "Profile") return o.profile.labels[OWNER_LABEL] === OWNER_VALUE;
  return o.endpoint.orchestrator === ORCHESTRATOR && o.endpoint.labels[OWNER_LABEL] === OWNER_VALUE;
}

function describe(o: ModelObject): string {
  return o.kind === "Profile" ? `profile ${o.profile.id}` : `endpoint ${endpointKeyString(o.endpoint)}`;
}

function refOf(o: ModelObject): ObjectRef {
  return o.kind === "Profile" ? { kind: "Profile", id: o.profile.id } : { kind: "Endpoint", key: o.endpoint };
}

/** Compared in stored form: the same serialisation the store compares before writing. */
function same(a: ModelObject, b: ModelObject): boolean {
  return JSON.stringify(toDocument(a)) === JSON.stringify(toDocument(b));
}

export function planReconcile(desired: ModelObject[], current: StoredObject[]): ReconcilePlan {
  const byKey = new Map(current.map((c) => [objectKey(c.object), c]));
  const wanted = new Set<string>();
  const plan: ReconcilePlan = { writes: [], deletes: [], unchanged: 0, conflicts: [] };
  for (const o of desired) {
    const k = objectKey(o);
    wanted.add(k);
    const have = byKey.get(k);
    if (!have) {
      plan.writes.push({ object: o, expectedRevision: 0, action: "create" });
    } else if (!isOwned(have.object)) {
      plan.conflicts.push(`${describe(o)} exists and is not owned by the OpenStack adapter (no label ${OWNER_LABEL}=${OWNER_VALUE}); refusing to overwrite it`);
    } else if (same(have.object, o)) {
      plan.unchanged++;
    } else {
      plan.writes.push({ object: o, expectedRevision: have.revision, action: "update" });
    }
  }
  for (const c of current) {
    if (isOwned(c.object) && !wanted.has(objectKey(c.object))) plan.deletes.push({ ref: refOf(c.object), expectedRevision: c.revision });
  }
  // One documented order for a plan split into several transactions (see
  // sync.ts, stepsInOrder): profiles written, endpoints deleted, endpoints
  // updated, endpoints created, profiles deleted. Profiles exist before the
  // endpoints that use them; a port's address leaves the old endpoint (delete,
  // update) before a new one takes it; a missing profile is deny-all.
  const rank = (w: PlannedWrite) => (w.object.kind === "Profile" ? 0 : w.action === "update" ? 1 : 2);
  plan.writes.sort((a, b) => rank(a) - rank(b));
  plan.deletes.sort((a, b) => (a.ref.kind === "Endpoint" ? 0 : 1) - (b.ref.kind === "Endpoint" ? 0 : 1));
  return plan;
}

/** The plan as one sequence, in the order documented above. */
export function stepsInOrder(plan: ReconcilePlan): (PlannedWrite | PlannedDelete)[] {
  const profileWrites = plan.writes.filter((w) => w.object.kind === "Profile");
  const endpointWrites = plan.writes.filter((w) => w.object.kind === "Endpoint");
  const endpointDeletes = plan.deletes.filter((d) => d.ref.kind === "Endpoint");
  const profileDeletes = plan.deletes.filter((d) => d.ref.kind === "Profile");
  return [...profileWrites, ...endpointDeletes, ...endpointWrites, ...profileDeletes];
}
