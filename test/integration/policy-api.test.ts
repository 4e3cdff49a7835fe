// PolicyService against a real etcd and a real gRPC server on loopback.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RpcError } from "../../services/contract/clients.js";
import { documentToPb, profileFromPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

const docs = (raw: unknown[]) => parseDocuments(raw).map(documentToPb);
const profile = (id: string, extra: Record<string, unknown> = {}) => ({ kind: "Profile", id, tags: [id], inbound_rules: [{ action: "allow", protocol: "tcp", dst_ports: [80] }], outbound_rules: [{ action: "allow" }], ...extra });
const endpoint = (id: string, extra: Record<string, unknown> = {}) => ({
  kind: "Endpoint", host: "hv1", orchestrator: "test", workload: `wl-${id}`, id, name: `tap${id}`, state: "active",
  ipv4_nets: ["198.18.1.2/32"], profile_ids: ["web"], ...extra,
});

async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    return e as RpcError;
  }
  throw new Error("expected the call to fail");
}

describe("PolicyService", () => {
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it("applies a batch atomically and returns the revision; reads it back", async () => {
    const c = t.clients.policy;
    const r = await t.policy(c.apply, { deletes: [], documents: docs([profile("web"), endpoint("e1")]) });
    expect(r.changed).toBe(2);
    expect(r.revision).toBeGreaterThan(0);
    const rev = await t.policy(c.getRevision, {});
    expect(rev.revision).toBe(r.revision);
    const got = await t.policy(c.getProfile, { id: "web" });
    expect(profileFromPb(got.profile!).inboundRules[0]!.match.dstPorts).toEqual([{ first: 80, last: 80 }]);
    expect(got.profile!.revision).toBe(r.revision);
    const eps = await t.policy(c.listEndpoints, { host: "hv1" });
    expect(eps.endpoints.map((e) => e.id)).toEqual(["e1"]);
  });

  it("writes nothing when the same documents are applied again", async () => {
    const c = t.clients.policy;
    const before = await t.policy(c.getRevision, {});
    const r = await t.policy(c.apply, { deletes: [], documents: docs([profile("web"), endpoint("e1")]) });
    expect(r.changed).toBe(0);
    expect(r.revision).toBe(before.revision);
  });

  it("rejects a batch with one invalid document, naming document and field, and writes nothing", async () => {
    const c = t.clients.policy;
    const before = await t.policy(c.listProfiles, {});
    const bad = documentToPb(parseDocuments([profile("ok2")])[0]!);
    // Bypass client-side validation: corrupt the message as a hostile caller could.
    if (bad.kind?.$case === "profile") bad.kind.value.inboundRules[0]!.match!.dstPorts = [{ first: 70000, last: 70000 }];
    const err = await rpcError(t.policy(c.apply, { deletes: [], documents: [...docs([profile("new1")]), bad] }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.message).toContain("Profile ok2");
    expect(err.message).toContain("inbound_rules[0].dst_ports[0]");
    const after = await t.policy(c.listProfiles, {});
    expect(after.profiles.map((p) => p.id).sort()).toEqual(before.profiles.map((p) => p.id).sort());
  });

  it("optimistic concurrency: a write with a stale expected revision is refused and changes nothing", async () => {
    const c = t.clients.policy;
    const created = await t.policy(c.apply, { deletes: [], documents: docs([profile("occ")]).map((d) => ({ ...d, expectedRevision: 0 })) });
    // "Must not exist yet" now fails.
    const again = await rpcError(t.policy(c.apply, { deletes: [], documents: docs([profile("occ", { tags: ["x"] })]).map((d) => ({ ...d, expectedRevision: 0 })) }));
    expect(again.code).toBe(grpc.status.FAILED_PRECONDITION);
    const read = await t.policy(c.getProfile, { id: "occ" });
    expect(read.profile!.revision).toBe(created.revision);
    // Read-modify-write with the revision as read succeeds once ...
    const updated = await t.policy(c.apply, { deletes: [], documents: docs([profile("occ", { tags: ["v2"] })]).map((d) => ({ ...d, expectedRevision: read.profile!.revision })) });
    expect(updated.changed).toBe(1);
    // ... and a second writer holding the same, now stale, revision is refused.
    const stale = await rpcError(t.policy(c.apply, { deletes: [], documents: docs([profile("occ", { tags: ["v3"] })]).map((d) => ({ ...d, expectedRevision: read.profile!.revision })) }));
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(stale.message).toContain(`expected revision ${read.profile!.revision}`);
    expect((await t.policy(c.getProfile, { id: "occ" })).profile!.tags).toEqual(["v2"]);
  });

  it("writes and deletes in one transaction (reconcilers), with per-deletion expected revisions", async () => {
    const c = t.clients.policy;
    const ref = (id: string) => ({ kind: { $case: "profileId" as const, value: id } });
    const first = await t.policy(c.apply, { deletes: [], documents: docs([profile("rc-old"), profile("rc-keep")]) });
    const r = await t.policy(c.apply, { documents: docs([profile("rc-new")]), deletes: [{ object: ref("rc-old"), expectedRevision: first.revision }, { object: ref("rc-never-existed") }] });
    expect(r.changed).toBe(1);
    expect(r.deleted).toBe(1);
    const ids = (await t.policy(c.listProfiles, {})).profiles.map((p) => p.id);
    expect(ids).toContain("rc-new");
    expect(ids).toContain("rc-keep");
    expect(ids).not.toContain("rc-old");

    // A stale deletion fails the whole batch: the document is not written either.
    const stale = await rpcError(t.policy(c.apply, { documents: docs([profile("rc-newer")]), deletes: [{ object: ref("rc-keep"), expectedRevision: 1 }] }));
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(stale.message).toMatch(/Profile rc-keep: expected revision 1/);
    const after = (await t.policy(c.listProfiles, {})).profiles.map((p) => p.id);
    expect(after).not.toContain("rc-newer");
    expect(after).toContain("rc-keep");

    // Written and deleted at once is a contradiction.
    const both = await rpcError(t.policy(c.apply, { documents: docs([profile("rc-keep")]), deletes: [{ object: ref("rc-keep") }] }));
    expect(both.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(both.message).toMatch(/rc-keep: deletes: is both written and deleted/);
    const bad = await rpcError(t.policy(c.apply, { documents: [], deletes: [{ object: ref("../x") }] }));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("refuses identifiers that could escape their etcd key", async () => {
    const c = t.clients.policy;
    const err = await rpcError(t.policy(c.getProfile, { id: "../status/hosts/x" }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const err2 = await rpcError(t.policy(c.delete, { objects: [{ kind: { $case: "profileId", value: "a/b" } }], ignoreMissing: false }));
    expect(err2.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("deletes atomically: NOT_FOUND for a missing object deletes nothing", async () => {
    const c = t.clients.policy;
    const err = await rpcError(t.policy(c.delete, { objects: [{ kind: { $case: "profileId", value: "web" } }, { kind: { $case: "profileId", value: "nope" } }], ignoreMissing: false }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.message).toContain("nope");
    await t.policy(c.getProfile, { id: "web" }); // still there
    const r = await t.policy(c.delete, { objects: [{ kind: { $case: "profileId", value: "web" } }, { kind: { $case: "profileId", value: "nope" } }], ignoreMissing: true });
    expect(r.deleted).toBe(1);
    const err3 = await rpcError(t.policy(c.getProfile, { id: "web" }));
    expect(err3.code).toBe(grpc.status.NOT_FOUND);
  });

  it("serves gRPC server reflection (grpcurl works), listing every Palisade service", async () => {
    const client = new grpc.Client(t.address, grpc.credentials.createInsecure());
    const body = await new Promise<string>((resolve, reject) => {
      const call = client.makeBidiStreamRequest("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", (x: Buffer) => x, (b: Buffer) => b);
      call.on("data", (b: Buffer) => { resolve(b.toString("latin1")); call.cancel(); });
      call.on("error", (e: grpc.ServiceError) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
      // ServerReflectionRequest { list_services (field 7) = "*" }
      call.write(Buffer.from([0x3a, 0x01, 0x2a]));
    });
    client.close();
    for (const svc of ["palisade.policy.v1.PolicyService", "palisade.sync.v1.DataplaneSyncService", "palisade.status.v1.StatusService"]) {
      expect(body).toContain(svc);
    }
  });

  it("serves the standard health service", async () => {
    const client = new grpc.Client(t.address, grpc.credentials.createInsecure());
    const res = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest("/grpc.health.v1.Health/Check", (x: Buffer) => x, (b: Buffer) => b, Buffer.alloc(0), (e, v) => (e ? reject(e) : resolve(v!)));
    });
    // HealthCheckResponse{status: SERVING(1)} encodes as 08 01.
    expect([...res]).toEqual([0x08, 0x01]);
    client.close();
  });
});
