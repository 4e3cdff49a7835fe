// The driver's long-lived `ipset -` session (DESIGN §6.7) on the real ipset
// in a network namespace: batches apply through one process; an error in
// the middle of a batch is detected and attributed to its line (and the
// lines after it were carried out, which is why the apply then fails and
// the next one reads back); a killed process is detected; and the driver,
// fed by a fake controller with the real calculation core's updates,
// recovers from both and ends holding exactly what it was sent, with every
// endpoint added after a failure in place. The session lives in the
// driver's namespace and ends with the driver.
//
// Mutations tried (each made these fail, then reverted): errors before the
// sentinel ignored (ipset-session.ts) — the error test and the driver test;
// Driver.stop() not closing the session — the driver test (the process
// outlives the driver); a session found dead between applies written to
// anyway (dataplane.ts) — the driver test (the apply fails: one failure more).
// The seeded histories of test/unit/driver-incremental.test.ts fail (10 of
// 30 session seeds) when a failed session batch does not fail the apply.
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CalcGraph, type HostUpdate } from "../../services/calc/index.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { IpsetSessionError, openIpsetSession } from "../../services/driver/kernel/ipset-session.js";
import { parseIpsetSave } from "../../services/driver/kernel/kernel-state.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { parseDocuments, type ModelObject } from "../../services/model/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { eventually, uniqueName } from "../support/binaries.js";

const logger = createLogger({ name: "test", level: "silent" });
/** Waits until cond() holds (20 s at most). */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  await eventually(async () => (await cond()) || undefined, { what, intervalMs: 10 });
}
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

let ns: string;
beforeEach(async () => {
  ns = uniqueName("ips");
  await execa("ip", ["netns", "add", ns]);
});
afterEach(async () => {
  await execa("ip", ["netns", "del", ns], { reject: false });
});

async function members(set: string): Promise<string[]> {
  const out = await execa("ip", ["netns", "exec", ns, "ipset", "save", set]);
  return out.stdout.split("\n").filter((l) => l.startsWith("add ")).map((l) => l.split(" ")[2]!).sort();
}

describe("ipset session (real ipset)", () => {
  it("batches apply through one process", async () => {
    await execa("ip", ["netns", "exec", ns, "ipset", "create", "pal4t-a", "hash:net", "family", "inet"]);
    const s = openIpsetSession(createExecRunner({ netns: ns }))!;
    try {
      for (let i = 1; i <= 5; i++) await s.run([`add pal4t-a 198.18.0.${i} -exist`, `add pal4t-a 198.18.1.${i} -exist`, `del pal4t-a 198.18.1.${i - 1} -exist`]);
      expect(await members("pal4t-a")).toEqual(["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.1.5"]);
      expect(s.ended).toBe(false);
      // It lives in the namespace it was opened for.
      expect((await execa("ip", ["netns", "identify", String(s.pid)])).stdout.trim()).toBe(ns);
    } finally {
      await s.close();
    }
    expect(alive(s.pid!)).toBe(false);
  });

  it("an error in the middle of a batch is detected and attributed to its line; the lines after it were carried out; the process is ended", async () => {
    await execa("ip", ["netns", "exec", ns, "ipset", "create", "pal4t-a", "hash:net", "family", "inet"]);
    const s = openIpsetSession(createExecRunner({ netns: ns }))!;
    await s.run(["add pal4t-a 198.18.0.1 -exist"]);
    const err = await s.run(["add pal4t-a 198.18.0.2 -exist", "add pal4t-nosuch 198.18.0.3 -exist", "add pal4t-a 198.18.0.4 -exist"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IpsetSessionError);
    expect((err as IpsetSessionError).reason).toBe("error");
    expect((err as Error).message).toMatch(/line 2 of 3: ipset v[\d.]+: The set with the given name does not exist/);
    // ipset went on after the error: why the caller must treat the whole batch as of unknown effect.
    expect(await members("pal4t-a")).toEqual(["198.18.0.1", "198.18.0.2", "198.18.0.4"]);
    expect(s.ended).toBe(true);
    expect(alive(s.pid!)).toBe(false);
  });

  it("the process killed from outside: the next batch fails (ended), nothing of it written", async () => {
    await execa("ip", ["netns", "exec", ns, "ipset", "create", "pal4t-a", "hash:net", "family", "inet"]);
    const s = openIpsetSession(createExecRunner({ netns: ns }))!;
    await s.run(["add pal4t-a 198.18.0.1 -exist"]);
    process.kill(s.pid!, "SIGKILL");
    const err = await s.run(["add pal4t-a 198.18.0.2 -exist"]).catch((e: unknown) => e);
    expect((err as IpsetSessionError).reason).toBe("ended");
    expect(await members("pal4t-a")).toEqual(["198.18.0.1"]);
  });

  it("refuses lines other than add/del with -exist (they go through ipset restore)", async () => {
    const s = openIpsetSession(createExecRunner({ netns: ns }))!;
    try {
      await expect(s.run(["create pal4t-b hash:net family inet -exist"])).rejects.toThrow(/only add\/del/);
      await expect(s.run(["add pal4t-b 198.18.0.1"])).rejects.toThrow(/only add\/del/);
      await expect(s.run(["add pal4t-b 198.18.0.1 -exist\nversion"])).rejects.toThrow(/only add\/del/);
    } finally {
      await s.close();
    }
  });
});

// The driver: endpoints added one at a time by the real calculation core,
// through a fake controller; the session killed between applies, and a
// batch failing in its middle (a set destroyed behind the driver's back).
describe("driver with an ipset session (real kernel)", () => {
  let driver: Driver | undefined;
  let ctl: FakeController | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
  });

  const base: ModelObject[] = parseDocuments([
    { kind: "Profile", id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "app", dst_ports: [5432] }], outbound_rules: [{}] },
    { kind: "Profile", id: "app", tags: ["app"], inbound_rules: [], outbound_rules: [{}] },
    { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "db", id: "e", name: "tapdb", state: "active", ipv4_nets: ["198.18.1.1"], profile_ids: ["db"] },
  ]);
  const app = (i: number): ModelObject => parseDocuments([
    { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: `app${i}`, id: "e", name: `tapapp${i}`, state: "active", ipv4_nets: [`198.18.2.${i}`], profile_ids: ["app"] },
  ])[0]!;
  /** A set the controller sends that no rule uses (so it can be destroyed behind the driver's back). */
  const EXTRA = "pal4t-extra";

  it("recovers from a killed session and from a batch failing in its middle; endpoints added after each failure are in place", async () => {
    let pending: HostUpdate[] = [];
    const g = new CalcGraph({ onHostUpdates: (h, _r, u) => { if (h === "hv1") pending.push(...u); } });
    // app1 is in the snapshot: the endpoints added later join its class (their set batches are add lines alone).
    for (const o of [...base, app(1)]) (o.kind === "Profile" ? g.upsertProfile(o.profile) : g.upsertEndpoint(o.endpoint));
    g.flush(1);
    const sent = new DesiredState();
    let revision = 1;
    const snapshot: HostUpdate[] = [...g.snapshot("hv1").updates, { type: "ipset-update", name: EXTRA, family: 4, members: ["198.18.9.1"] }];
    pending = [];
    sent.apply(snapshot);

    ctl = await startFakeController();
    driver = await startDriver({
      controllers: [ctl.address], hostname: "hv1", runner: createExecRunner({ netns: ns }), logger, backend: "nft", families: [4],
      driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false,
    });
    const d = driver;
    await until(() => ctl!.connected(), "connected");
    ctl.send(1, snapshot, true);
    await until(() => d.appliedRevision === 1, "revision 1 applied");

    /** Sends what the calculation says for `extra` (more updates appended); waits for the acknowledgement. */
    const step = async (obj: ModelObject | undefined, extra: HostUpdate[] = []) => {
      revision++;
      if (obj?.kind === "Endpoint") g.upsertEndpoint(obj.endpoint);
      g.flush(revision);
      const u = [...pending, ...extra];
      pending = [];
      sent.apply(u);
      ctl!.send(revision, u);
      const r = revision;
      await until(() => ctl!.acks().includes(r), `revision ${r} acknowledged`);
    };

    await step(app(2));
    const first = d.dataplane.ipsetSessionPid;
    expect(first).toBeDefined();
    expect((await execa("ip", ["netns", "identify", String(first)])).stdout.trim()).toBe(ns);
    expect(d.counters.ipsetSessionStarts).toBe(1);

    // Killed between applies: the next endpoint's members go through a restore; the apply succeeds.
    process.kill(first!, "SIGKILL");
    await until(() => !alive(first!), "the session's process gone");
    await step(app(3));
    expect(d.counters.ipsetSessionFailures).toBe(1);
    expect(d.counters.applyFailures).toBe(0);
    // After a successful apply, the next set batch starts a new session.
    await step(app(4));
    const second = d.dataplane.ipsetSessionPid;
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(d.counters.ipsetSessionStarts).toBe(2);

    // A batch failing in its middle: the extra set destroyed behind the
    // driver's back, then one batch adding to it and adding an endpoint.
    await execa("ip", ["netns", "exec", ns, "ipset", "destroy", EXTRA]);
    await step(app(5), [{ type: "ipset-delta", name: EXTRA, family: 4, added: ["198.18.9.2"], removed: [] }]);
    expect(d.counters.ipsetSessionFailures).toBe(2);
    expect(d.counters.applyFailures).toBeGreaterThanOrEqual(1);
    expect(alive(second!)).toBe(false);
    // And the next endpoint, through a new session.
    await step(app(6));
    const third = d.dataplane.ipsetSessionPid;
    expect(third).toBeDefined();
    expect(d.counters.ipsetSessionStarts).toBe(3);

    // The kernel holds exactly what was sent: every set and member.
    const kernel = parseIpsetSave((await execa("ip", ["netns", "exec", ns, "ipset", "save"])).stdout);
    const norm = (m: Iterable<[string, { members: Set<string> }]>) => Object.fromEntries([...m].map(([n, s]) => [n, [...s.members].sort()]));
    expect(norm(kernel)).toEqual(norm(sent.sets));
    expect(kernel.get(EXTRA)?.members).toEqual(new Set(["198.18.9.1", "198.18.9.2"]));
    // The app tag's set holds every app endpoint, those added after a failure too.
    expect([...kernel.get("pal4t-app")!.members].sort()).toEqual([1, 2, 3, 4, 5, 6].map((i) => `198.18.2.${i}`));
    expect(await d.dataplane.detectDrift()).toBe(false);

    // The session is the driver's own process: it ends with the driver.
    await d.stop();
    driver = undefined;
    expect(alive(third!)).toBe(false);
  });
});
