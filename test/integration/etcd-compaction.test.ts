// etcd history compaction by exactly one elected replica, with retention by
// time. Its own etcd (compaction is cluster-wide; the shared test etcd serves
// other files' watchers) and an injected clock, so "5 minutes later" is one
// assignment.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createEtcdClient } from "../../services/controller/etcd-client.js";
import { startEtcd, type EtcdProcess } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type TestController = Awaited<ReturnType<typeof startTestController>>;
const dir = mkdtempSync(join(tmpdir(), "palisade-compaction-"));
let etcd: EtcdProcess;
const clock = { t: 1_000_000 };
const RETENTION = 5 * 60_000;
const prefix = `/${uniqueName("cmp")}`;

const start = () => startTestController({
  etcdEndpoints: [etcd.url], prefix,
  // The loop's own interval is an hour: the test drives tick() itself.
  extra: { etcdCompaction: { retentionMs: RETENTION, intervalMs: 3_600_000, now: () => clock.t, leaseTtlSeconds: 2 } },
});
const apply = (t: TestController, id: string, tags: string[] = []) =>
  call(t.clients.policy, t.clients.policy.apply, { documents: parseDocuments([{ kind: "Profile", id, tags, inbound_rules: [], outbound_rules: [] }]).map(documentToPb), deletes: [] });

describe("etcd history compaction", () => {
  let a: TestController;
  let b: TestController | undefined;
  beforeAll(async () => {
    etcd = await startEtcd({ dataDir: join(dir, "etcd") });
    a = await start();
    b = await start();
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("one replica compacts to the revision seen `retention` ago; etcd then refuses reads below it", async () => {
    const [ca, cb] = [a.controller.compactor!, b!.controller.compactor!];
    await eventually(async () => ca.leader || cb.leader, { what: "a compaction leader" });
    expect(ca.leader && cb.leader).toBe(false);
    const [leader, other] = ca.leader ? [ca, cb] : [cb, ca];

    const first = await apply(a, "p", ["v1"]);
    await leader.tick(); await other.tick(); // sample at t0: etcd's revision >= first.revision
    clock.t += 60_000;
    const second = await apply(a, "p", ["v2"]);
    await leader.tick(); await other.tick();
    // Nothing is old enough yet.
    expect(leader.lastCompacted).toBe(0);
    clock.t += RETENTION - 60_000; // t0 + retention
    await leader.tick(); await other.tick();
    expect(leader.lastCompacted).toBeGreaterThanOrEqual(first.revision);
    expect(leader.lastCompacted).toBeLessThan(second.revision);
    expect(other.lastCompacted).toBe(0);

    const raw = createEtcdClient({ endpoints: [etcd.url] }, "model");
    try {
      const key = `${prefix}/model/profiles/p`;
      await expect(raw.get(key).revision(String(leader.lastCompacted - 1)).string()).rejects.toThrow(/compacted/);
      expect(await raw.get(key).revision(String(leader.lastCompacted)).string()).toContain("v1");
    } finally {
      raw.close();
    }
    // Both replicas' model watches carry on across the compaction.
    const third = await apply(b!, "p", ["v3"]);
    for (const t of [a, b!]) await eventually(async () => t.controller.graph.modelView().profiles.get("p")?.tags.includes("v3") ?? false, { what: `replica saw revision ${third.revision}` });
  });

  it("the other replica takes over when the leader stops, and compacts further", async () => {
    const aLeads = a.controller.compactor!.leader;
    const survivor = aLeads ? b! : a;
    if (aLeads) { await a.stop(); a = b!; } else await b!.stop();
    b = undefined;
    const c = survivor.controller.compactor!;
    // At once when the leader resigns; a lease TTL (10 s) when its resignation did not reach etcd. Each
    // step asks etcd (as the loop does every interval), so a campaign whose events never come still takes over.
    await eventually(async () => { await c.tick(); return c.leader; }, { what: "takeover", timeoutMs: 30_000 });
    const before = c.lastCompacted;
    const w = await apply(survivor, "q");
    await c.tick();
    clock.t += RETENTION;
    await c.tick();
    expect(c.lastCompacted).toBeGreaterThanOrEqual(w.revision);
    expect(c.lastCompacted).toBeGreaterThan(before);
  });
});
