// Drift = the kernel no longer holds what the driver last programmed. A
// desired change that is merely pending (arrived, not yet applied) is not
// drift: it must be applied as a normal apply, not logged and counted as a
// repair. Against an in-memory kernel (support/fake-kernel.ts) and, for the
// driver, an in-process fake controller stream on loopback.
import { afterEach, describe, expect, it } from "vitest";
import { chainKey, type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import type { PlanInput } from "../../services/driver/plan/plan.js";
import { driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { startFakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";

const logger = createLogger({ name: "test", level: "silent" });
const chain = (name: string, rules: string[]): ChainDef => ({ table: "filter", family: 4, name, rules });
const web = (port: number) => chain("pal-pi-web", [`-p tcp --dport ${port} -j ACCEPT`]);

/** The hooks jump to the base chains, which jump to the entry chains: a state the kernel accepts. */
const BASE = [
  ...driverBaseChains(["tap"], [4]).values(),
  ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => chain(n, ["-j DROP"])),
];

function input(chains: ChainDef[], members: string[] = ["198.18.0.1"]): PlanInput {
  return {
    chains: new Map([...BASE, ...chains].map((c) => [chainKey(c.family, c.name), c])),
    sets: new Map([["pal4t-web", { family: 4 as const, members: new Set(members) }]]),
    families: [4],
    removeUnwanted: true,
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("dataplane.detectDrift compares with what was last programmed", () => {
  it("a pending desired change is not drift; a kernel edit is, and the next apply repairs it", async () => {
    const k = new FakeKernel();
    const dp = createDataplane({ runner: k, backend: "nft", families: [4], logger });
    await dp.apply(input([web(80)]));
    expect(await dp.detectDrift()).toBe(false);
    // The controller has moved on (port 81, a new member) but nothing is applied yet.
    const next = input([web(81)], ["198.18.0.1", "198.18.0.2"]);
    expect(await dp.detectDrift()).toBe(false);
    // Someone flushes our chain and empties the set.
    k.tables[4].set("pal-pi-web", []);
    k.sets.get("pal4t-web")!.members.clear();
    expect(await dp.detectDrift()).toBe(true);
    // One apply repairs and carries out the pending change; then all is quiet.
    await dp.apply(next);
    expect(k.chain(4, "pal-pi-web")!.join("\n")).toContain("--dport 81");
    expect([...k.sets.get("pal4t-web")!.members].sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(await dp.detectDrift()).toBe(false);
  });

  it("after a failed apply, our own half-written state is not called drift", async () => {
    const k = new FakeKernel();
    const dp = createDataplane({ runner: k, backend: "nft", families: [4], logger });
    await dp.apply(input([web(80)]));
    // The set stage succeeds, the iptables stage fails: the kernel now holds
    // neither the old nor the new state.
    let fail = true;
    const flaky = { run: (cmd: string, args: string[], inp?: string) => (fail && cmd.endsWith("restore") && cmd.includes("tables") ? Promise.reject(new Error("injected")) : k.run(cmd, args, inp)) };
    const dp2 = createDataplane({ runner: flaky, backend: "nft", families: [4], logger });
    await dp2.apply(input([web(80)]));
    await expect(dp2.apply(input([web(81)], ["198.18.0.9"]))).rejects.toThrow("injected");
    expect(await dp2.detectDrift()).toBe(false);
    fail = false;
    await dp2.apply(input([web(81)], ["198.18.0.9"]));
    expect(await dp2.detectDrift()).toBe(false);
    k.tables[4].get("pal-pi-web")!.push("-j ACCEPT");
    expect(await dp2.detectDrift()).toBe(true);
  });
});

describe("driver: drift repairs are counted only for real kernel edits", () => {
  let stop: (() => void) | undefined;
  let driver: Driver | undefined;
  afterEach(async () => {
    await driver?.stop();
    stop?.();
  });

  async function fakeController() {
    const ctl = await startFakeController();
    stop = ctl.stop;
    return ctl;
  }

  const SNAPSHOT: HostUpdate[] = [
    ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => ({ type: "chain-update" as const, chain: chain(n, ["-j DROP"]) })),
    { type: "chain-update", chain: web(80) },
    { type: "ipset-update", name: "pal4t-web", family: 4, members: ["198.18.0.1"] },
  ];

  it("a change pending while a drift check runs is applied, not counted; a flushed chain is counted once and repaired", async () => {
    const k = new FakeKernel();
    const ctl = await fakeController();
    // Read-backs as often as possible, so some always meet a pending change.
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 20, postWriteCheckMs: 20, readInterface: async () => "up", rulesetMonitor: false });
    await until(ctl.connected, "driver connected");
    ctl.send(1, SNAPSHOT, true);
    await driver.firstSync;
    await until(() => driver!.appliedRevision === 1, "revision 1");
    expect(driver.counters.driftRepairs).toBe(0);

    // Hold the next iptables-restore: revision 2 is being applied, revision 3
    // arrives meanwhile, and drift checks are requested meanwhile.
    let release!: () => void;
    k.gate = new Promise<void>((r) => (release = r));
    const restores = () => k.log.filter((l) => l.startsWith("iptables-nft-restore")).length;
    const before = restores();
    ctl.send(2, [{ type: "chain-update", chain: web(81) }]);
    await until(() => restores() > before, "revision 2 restore started");
    ctl.send(3, [{ type: "chain-update", chain: web(82) }, { type: "ipset-delta", name: "pal4t-web", family: 4, added: ["198.18.0.2"], removed: [] }]);
    await new Promise((r) => setTimeout(r, 100)); // several periodic checks fall due
    k.gate = undefined;
    release();
    await until(() => driver!.appliedRevision === 3, "revision 3");
    expect(k.chain(4, "pal-pi-web")!.join("\n")).toContain("--dport 82");
    await new Promise((r) => setTimeout(r, 100)); // more checks: still nothing to repair
    expect(driver.counters.driftRepairs).toBe(0);

    // A real edit behind the driver's back.
    k.tables[4].set("pal-pi-web", []);
    await until(() => driver!.counters.driftRepairs > 0, "drift repaired");
    await until(() => (k.chain(4, "pal-pi-web") ?? []).join("\n").includes("--dport 82"), "chain restored");
    await new Promise((r) => setTimeout(r, 100));
    expect(driver.counters.driftRepairs).toBe(1);
  });

  it("before the first in-sync, an edit the tamper watch reports is repaired (the fail-closed start holds)", async () => {
    const k = new FakeKernel();
    const ctl = await fakeController();
    // No periodic or post-write checks: only the tamper watch's request (checkDrift).
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false });
    await until(() => (k.chain(4, "FORWARD") ?? []).some((r) => r.endsWith("-j pal-FORWARD")), "placeholders and hook applied");
    await until(ctl.connected, "driver connected");
    // The controller has not sent a snapshot yet. A host firewall reload drops our hook and flushes a placeholder.
    k.tables[4].set("FORWARD", []);
    k.tables[4].set("pal-from-wl-dispatch", []);
    driver.checkDrift();
    await until(() => (k.chain(4, "FORWARD") ?? []).some((r) => r.endsWith("-j pal-FORWARD")), "hook restored before the first in-sync");
    await until(() => (k.chain(4, "pal-from-wl-dispatch") ?? []).some((r) => r.endsWith("-j DROP")), "placeholder restored");
    expect(driver.counters.driftRepairs).toBe(1);
  });

  it("the first snapshot is planned against what the kernel holds then, not what the start-up apply left", async () => {
    const k = new FakeKernel();
    const ctl = await fakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false });
    await until(() => (k.chain(4, "FORWARD") ?? []).some((r) => r.endsWith("-j pal-FORWARD")), "placeholders and hook applied");
    await until(ctl.connected, "driver connected");
    // Unseen (legacy backend: no tamper watch; the periodic check not due yet): the hook is gone.
    k.tables[4].set("FORWARD", []);
    ctl.send(1, SNAPSHOT, true);
    await until(() => driver!.appliedRevision === 1, "revision 1");
    expect((k.chain(4, "FORWARD") ?? []).filter((r) => r.endsWith("-j pal-FORWARD"))).toHaveLength(1);
  });

  it("a drift check between a failed apply and its retry counts nothing", async () => {
    const k = new FakeKernel();
    const ctl = await fakeController();
    let failing = false;
    const runner = { run: (cmd: string, args: string[], inp?: string) => (failing && cmd === "iptables-nft-restore" ? Promise.reject(new Error("injected")) : k.run(cmd, args, inp)) };
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner, logger, backend: "nft", families: [4], driftCheckMs: 20, postWriteCheckMs: 20, readInterface: async () => "up", rulesetMonitor: false });
    await until(ctl.connected, "driver connected");
    ctl.send(1, SNAPSHOT, true);
    await until(() => driver!.appliedRevision === 1, "revision 1");
    failing = true;
    ctl.send(2, [{ type: "chain-update", chain: web(81) }, { type: "ipset-delta", name: "pal4t-web", family: 4, added: ["198.18.0.2"], removed: [] }]);
    await until(() => driver!.counters.applyFailures > 0, "apply failed");
    await new Promise((r) => setTimeout(r, 150)); // the retry backs off (200 ms); checks fall due meanwhile
    failing = false;
    await until(() => driver!.appliedRevision === 2, "revision 2 after retry");
    await new Promise((r) => setTimeout(r, 100));
    expect(driver.counters.driftRepairs).toBe(0);
  });
});
