// etcd's limits and failures as clients see them, against real etcd
// processes started for this file: --max-txn-ops 16, a small
// --quota-backend-bytes filled until the NOSPACE alarm, and etcd stopped.
// Each case is checked through the gRPC client (code and one-line message)
// and through palisadectl (exit 1, the same one line on stderr), and a
// refused write must change nothing. Under the alarm, deletions still work.
import { fillUntilNoSpace } from "../support/etcd-space.js";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { execa } from "execa";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RpcError, call } from "../../services/contract/clients.js";
import { documentToPb, refToPb } from "../../services/contract/model-wire.js";
import { createEtcdClient } from "../../services/controller/etcd-client.js";
import { startEtcd, type EtcdProcess } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, palisadectl, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type TestController = Awaited<ReturnType<typeof startTestController>>;
const dir = mkdtempSync(join(tmpdir(), "palisade-etcd-limits-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const profiles = (prefix: string, n: number) => Array.from({ length: n }, (_, i) =>
  ({ kind: "Profile", id: `${prefix}-${i}`, tags: [], inbound_rules: [], outbound_rules: [{ action: "allow" }] }));
const pb = (docs: object[]) => parseDocuments(docs).map(documentToPb);

async function refused(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcError) return e;
    throw e;
  }
  throw new Error("expected the call to be refused");
}

async function profileIds(t: TestController): Promise<string[]> {
  const r = await call(t.clients.policy, t.clients.policy.listProfiles, {});
  return r.profiles.map((p) => p.id).sort();
}

function file(name: string, docs: object[]): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(docs));
  return p;
}

describe("etcd with --max-txn-ops 16", () => {
  let etcd: EtcdProcess;
  let t: TestController;
  beforeAll(async () => {
    requireBuild();
    etcd = await startEtcd({ dataDir: join(dir, "txn"), maxTxnOps: 16 });
    t = await startTestController({ etcdEndpoints: [etcd.url] });
  });
  afterAll(async () => {
    await t?.stop();
    await etcd?.stop();
  });

  it("accepts a batch that fits (15 documents + the revision key = 16 operations)", async () => {
    const r = await call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("fits", 15)), deletes: [] });
    expect(r.changed).toBe(15);
  });

  it("refuses larger batches with FAILED_PRECONDITION naming --max-txn-ops and the operations needed; nothing written", async () => {
    const before = await profileIds(t);
    // 16 documents: the reads fit (16), the write needs 17 — refused by etcd itself.
    const e16 = await refused(call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("edge", 16)), deletes: [] }));
    expect(e16.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e16.message).toContain("needs 17 operations");
    expect(e16.message).toContain("--max-txn-ops");
    // 40 documents: more than etcd accepts even for the reads.
    const e40 = await refused(call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("big", 40)), deletes: [] }));
    expect(e40.code).toBe(grpc.status.FAILED_PRECONDITION);
    // "(16)" once the start-up detection has finished (next test).
    expect(e40.message).toMatch(/needs 41 operations in one transaction, more than etcd's --max-txn-ops( \(16\))?; run etcd with --max-txn-ops 5001 or more/);
    expect(e40.message).not.toContain("\n");
    expect(await profileIds(t)).toEqual(before);
  });

  it("detects the limit at start (read-only) and then refuses up front, naming it", async () => {
    const e = await eventually(async () => {
      const x = await refused(call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("up", 40)), deletes: [] }));
      return x.message.includes("--max-txn-ops (16)") ? x : undefined;
    }, { what: "detected limit in the message" });
    expect(e!.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it("palisadectl prints the one-line reason and exits 1", async () => {
    const r = await palisadectl(t.address, ["apply", "-f", file("big.json", profiles("cli", 40))]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^palisadectl: etcd refused the transaction: this write needs 41 operations in one transaction, more than etcd's --max-txn-ops/);
  });
});

describe("etcd out of space (NOSPACE alarm), then stopped", () => {
  let etcd: EtcdProcess;
  let t: TestController;
  let raw: Etcd3;
  const etcdctl = (...args: string[]) => execa("etcdctl", ["--endpoints", etcd.url, ...args], { env: { ETCDCTL_API: "3" } });
  beforeAll(async () => {
    requireBuild();
    etcd = await startEtcd({ dataDir: join(dir, "nospace"), quotaBackendBytes: 3 * 1024 * 1024 });
    t = await startTestController({ etcdEndpoints: [etcd.url] });
    // etcd3's default policy would open its breaker on the filler's NOSPACE
    // refusal and refuse the test's own calls for 5 s; use Palisade's.
    raw = createEtcdClient({ endpoints: [etcd.url] }, "model");
    await call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("keep", 4)), deletes: [] });
    // Fill with big values (outside Palisade's prefix) until etcd raises the alarm.
    await fillUntilNoSpace(raw);
  });
  afterAll(async () => {
    raw?.close();
    await t?.stop();
    await etcd?.stop();
  });

  it("refuses writes with RESOURCE_EXHAUSTED and a one-line reason pointing at the runbook; reads keep working", async () => {
    const e = await refused(call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("new", 1)), deletes: [] }));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.message).toMatch(/^etcd is out of space \(NOSPACE alarm.*deletions still work.*README "etcd out of space"/);
    expect(e.message).not.toContain("\n");
    // Right after the refusal (no breaker opened by it), reads are served.
    expect(await profileIds(t)).toEqual(["keep-0", "keep-1", "keep-2", "keep-3"]);
    const p = await call(t.clients.policy, t.clients.policy.getProfile, { id: "keep-0" });
    expect(p.profile?.id).toBe("keep-0");
    const r = await palisadectl(t.address, ["apply", "-f", file("one.json", profiles("cli-new", 1))]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^palisadectl: etcd is out of space \(NOSPACE alarm/);
  });

  it("deletes under the alarm (palisadectl and gRPC, Delete and a deletions-only Apply); the graph sees them", async () => {
    const r = await palisadectl(t.address, ["delete", "profile", "keep-3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const d = await call(t.clients.policy, t.clients.policy.delete, { objects: [refToPb({ kind: "Profile", id: "keep-2" })], ignoreMissing: false });
    expect(d.deleted).toBe(1);
    const a = await call(t.clients.policy, t.clients.policy.apply, { documents: [], deletes: [{ object: refToPb({ kind: "Profile", id: "keep-1" }) }] });
    expect(a.deleted).toBe(1);
    expect(await profileIds(t)).toEqual(["keep-0"]);
    await eventually(async () => ![...t.controller.graph.profileIds()].some((id) => id !== "keep-0"), { what: "graph saw the deletions" });
    // The revision key is gone (etcd refuses to touch it); the model revision
    // falls back to what this replica's watch delivered: the last deletion.
    const rev = await call(t.clients.policy, t.clients.policy.getRevision, {});
    expect(rev.revision).toBe(a.revision);
  });

  it("after compaction, defragmentation and disarm: writes work again and the revision key is back", async () => {
    await raw.delete().prefix("/filler/");
    const head = await raw.get("/anything").exec();
    await etcdctl("compact", head.header.revision);
    await etcdctl("defrag");
    await etcdctl("alarm", "disarm");
    expect((await etcdctl("alarm", "list")).stdout.trim()).toBe("");
    // Put back by the store's repair loop, without any write from a client.
    const prefix = t.prefix.replace(/\/+$/, "");
    await eventually(async () => (await raw.get(`${prefix}/model/revision`).exec()).kvs.length === 1, { what: "revision key restored", timeoutMs: 15_000 });
    const r = await call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("again", 1)), deletes: [] });
    expect(r.changed).toBe(1);
    expect((await call(t.clients.policy, t.clients.policy.getRevision, {})).revision).toBe(r.revision);
  });

  it("etcd stopped: UNAVAILABLE 'etcd unavailable: …' (not 'cannot reach the controller'), through gRPC and palisadectl", async () => {
    await etcd.stop();
    const e = await refused(call(t.clients.policy, t.clients.policy.apply, { documents: pb(profiles("down", 1)), deletes: [] }));
    expect(e.code).toBe(grpc.status.UNAVAILABLE);
    expect(e.message).toMatch(/^etcd unavailable: /);
    expect(e.message).not.toContain("\n");
    const g = await refused(call(t.clients.policy, t.clients.policy.getProfile, { id: "keep-0" }));
    expect(g.code).toBe(grpc.status.UNAVAILABLE);
    const r = await palisadectl(t.address, ["get", "profiles"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^palisadectl: etcd unavailable: /);
  });
});
