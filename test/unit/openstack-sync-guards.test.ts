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

  it("refuses to delete every endpoint, or more than half of at least 10, unless allowed; smaller deletions pass", async () => {
    const all = fakePolicy(twenty.slice(0, 3));
    await expect(syncOnce(all.client, desired([]))).rejects.toThrow(/would delete 3 of the 3 endpoint\(s\)/);
    expect(all.applied).toEqual([]);
    const most = fakePolicy(twenty);
    await expect(syncOnce(most.client, desired(twenty.slice(0, 9)))).rejects.toThrow(/would delete 11 of the 20/);
    const half = fakePolicy(twenty);
    expect((await syncOnce(half.client, desired(twenty.slice(0, 10)))).deleted).toBe(10);
    const allowed = fakePolicy(twenty.slice(0, 3));
    expect((await syncOnce(allowed.client, desired([]), { allowMassDelete: true })).deleted).toBe(3);
    expect(allowed.applied).toEqual([{ documents: 0, deletes: 3 }]);
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
