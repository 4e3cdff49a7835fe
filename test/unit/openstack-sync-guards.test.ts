// syncOnce's guards and checks against a scripted PolicyService (no server):
// the mass-delete guard, the non-admin port list, and deletions an older
// controller would silently ignore.
import { describe, expect, it } from "vitest";
import { endpointToPb, profileToPb } from "../../services/contract/model-wire.js";
import type { PolicyServiceClient } from "../../services/gen/palisade/policy/v1/policy.js";
import type { Endpoint, ModelObject } from "../../services/model/index.js";
import { AdapterError, syncOnce } from "../../services/openstack/sync.js";
import { SKIP_NO_BINDING, type TranslateResult } from "../../services/openstack/translate.js";

const owner = { "palisade.io/owner": "openstack" };
const ep = (id: string): Endpoint => ({
  host: "hv1", orchestrator: "openstack", workload: "vm", id, name: `tap${id}`, state: "active", ipv4Nets: [], ipv6Nets: [], profileIds: [], labels: owner,
});

/** A PolicyService holding `stored` endpoints; `deletedReply` is what Apply claims to have deleted (undefined: all asked). */
function fakePolicy(stored: Endpoint[], deletedReply?: number) {
  const applied: { documents: number; deletes: number }[] = [];
  const reply = <T>(value: T) => (_req: unknown, _md: unknown, _o: unknown, cb: (e: null, r: T) => void) => cb(null, value);
  const client = {
    listProfiles: reply({ profiles: [profileToPb({ id: "g", tags: ["g"], inboundRules: [], outboundRules: [], labels: owner }, 1)], revision: 9 }),
    listEndpoints: reply({ endpoints: stored.map((e, i) => endpointToPb(e, 10 + i)), revision: 9 }),
    getRevision: reply({ revision: 9 }),
    apply: (req: { documents: unknown[]; deletes: unknown[] }, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => {
      applied.push({ documents: req.documents.length, deletes: req.deletes.length });
      cb(null, { revision: 10, changed: req.documents.length, deleted: deletedReply ?? req.deletes.length });
    },
    getChannel: () => ({ getTarget: () => "fake" }),
  };
  return { client: client as unknown as PolicyServiceClient, applied };
}

const desired = (endpoints: Endpoint[], skipped: TranslateResult["skipped"] = []): TranslateResult => ({
  objects: [
    { kind: "Profile", profile: { id: "g", tags: ["g"], inboundRules: [], outboundRules: [], labels: owner } },
    ...endpoints.map((endpoint): ModelObject => ({ kind: "Endpoint", endpoint })),
  ],
  warnings: [], skipped, leftOut: [],
});

describe("syncOnce guards", () => {
  const twenty = Array.from({ length: 20 }, (_, i) => ep(`p${i}`));

  it("deleting the last endpoints of a small cloud is not a mass deletion; more than half of at least 10 is held back unless allowed", async () => {
    const small = fakePolicy(twenty.slice(0, 1));
    expect((await syncOnce(small.client, desired([]))).deleted).toBe(1); // "1 of 1"
    const few = fakePolicy(twenty.slice(0, 9));
    expect((await syncOnce(few.client, desired([]))).deleted).toBe(9);
    const half = fakePolicy(twenty);
    expect((await syncOnce(half.client, desired(twenty.slice(0, 10)))).deleted).toBe(10);
    const allowed = fakePolicy(twenty);
    const r = await syncOnce(allowed.client, desired([]), { allowMassDelete: true });
    expect([r.deleted, r.heldBack.length]).toEqual([20, 0]);
  });

  it("holds back only the endpoint deletions (and their profiles), applies everything else, and marks what it holds", async () => {
    const most = fakePolicy(twenty);
    // 11 of 20 gone, one kept endpoint changed, one new: the change and the creation go; no deletion does.
    const kept = twenty.slice(0, 9).map((e, i) => (i === 0 ? { ...e, state: "inactive" as const } : e));
    const r = await syncOnce(most.client, desired([...kept, ep("new")]));
    expect(r.heldBack.length).toBe(11);
    expect(r.owned).toBe(20);
    expect(r.deleted).toBe(0);
    expect(r.created).toBe(1);
    // 1 changed + 11 marked with palisade.io/deletion-held.
    expect(r.updated).toBe(12);
    expect(most.applied).toEqual([{ documents: 13, deletes: 0 }]);
    expect(r.changes.filter((c) => c.startsWith("delete"))).toEqual([]);
  });

  it("refuses ports listed without admin rights", async () => {
    const f = fakePolicy([ep("p1")]);
    await expect(syncOnce(f.client, desired([], [{ port: "x", reason: SKIP_NO_BINDING }]))).rejects.toThrow(/listed without admin rights/);
    expect(f.applied).toEqual([]);
  });

  it("fails when the controller deleted fewer objects than asked (older than ApplyRequest.deletes)", async () => {
    const f = fakePolicy(twenty.slice(0, 4), 0);
    const err = await syncOnce(f.client, desired(twenty.slice(0, 3))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as Error).message).toMatch(/deleted 0 of 1 object\(s\): is it older than this adapter/);
  });
});
