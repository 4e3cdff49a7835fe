// Conntrack zones per bridge (DESIGN §6.13), the pure parts and the driver's
// wiring on the fake kernel: which bridges get a zone, the raw chain, its
// section and hook in a restore, a zone change after the first in-sync
// (planned from the change), and the host status for a bridge whose
// ifindex is no zone. The real packets are test/dataplane/conntrack-zones.test.ts.
import { afterEach, describe, expect, it } from "vitest";
import { keyOf, type ChainDef, type HostUpdate } from "../../services/contract/host-update.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { readBridgedPorts } from "../../services/driver/monitors/bridge-check.js";
import { readBridgeZones, type BridgeReader } from "../../services/driver/monitors/bridge-zones.js";
import { touchesOurs } from "../../services/driver/monitors/ruleset-monitor.js";
import { parseIptablesSave } from "../../services/driver/kernel/kernel-state.js";
import { hookRule, planApply, type PlanInput } from "../../services/driver/plan/plan.js";
import { renderZoneChains, zoneOfIfindex } from "../../services/driver/plan/zone-chains.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";

const logger = createLogger({ name: "test", level: "silent" });

/** A host: interface -> the bridge it is a port of (or null), and ifindexes. */
function bridges(ports: Record<string, string | null>, ifindex: Record<string, number>): BridgeReader & { ports: Record<string, string | null>; ifindexes: Record<string, number> } {
  const r = {
    ports, ifindexes: ifindex,
    interfaces: async () => [...Object.keys(r.ports), ...Object.keys(r.ifindexes)],
    bridgeOf: async (n: string) => r.ports[n] ?? undefined,
    ifindex: async (n: string) => r.ifindexes[n],
  };
  return r;
}

describe("which bridges get a zone", () => {
  it("zone = ifindex, 1..65535", () => {
    expect([0, 1, 65535, 65536, 1.5, -3].map(zoneOfIfindex)).toEqual([undefined, 1, 65535, undefined, undefined, undefined]);
  });

  it("every bridge with a workload port, once; others' ports and bridges without workloads are not zoned", async () => {
    const r = bridges({ tap1: "brq1", tap2: "brq1", tap3: "qbr3", tap4: null, vxlan9: "brq9", eth0: null }, { brq1: 7, qbr3: 12, brq9: 9 });
    expect(await readBridgeZones(await readBridgedPorts(["tap"], r), r)).toEqual({ zones: [{ bridge: "brq1", zone: 7 }, { bridge: "qbr3", zone: 12 }] });
  });

  it("a bridge whose ifindex is no zone is named in the problem and not zoned", async () => {
    const r = bridges({ tap1: "brq1", tap2: "brbig" }, { brq1: 7, brbig: 70000 });
    const z = await readBridgeZones(await readBridgedPorts(["tap"], r), r);
    expect(z.zones).toEqual([{ bridge: "brq1", zone: 7 }]);
    expect(z.problem).toMatch(/bridges without a conntrack zone: brbig \(ifindex 70000\)/);
  });

  it("the raw chain: one CT rule per bridge, by name, whatever the order found", () => {
    const [c] = renderZoneChains([{ bridge: "brq2", zone: 9 }, { bridge: "brq1", zone: 30 }], 6);
    expect(c).toEqual({ table: "raw", family: 6, name: "pal-PREROUTING", rules: ["-i brq1 -j CT --zone 30", "-i brq2 -j CT --zone 9"] });
  });
});

describe("the raw table in plans and read-backs", () => {
  const filter: ChainDef[] = [4, 6].flatMap((f) => [
    { table: "filter" as const, family: f as 4 | 6, name: "pal-FORWARD", rules: ["-j ACCEPT"] },
    { table: "filter" as const, family: f as 4 | 6, name: "pal-INPUT", rules: [] },
  ]);
  const input = (zones: { bridge: string; zone: number }[]): PlanInput => {
    const chains = [...filter, ...[4, 6].flatMap((f) => renderZoneChains(zones, f as 4 | 6))];
    return { chains: new Map(chains.map((c) => [keyOf(c), c])), sets: new Map(), families: [4, 6], removeUnwanted: true };
  };

  it("a first apply writes a raw section (chain and PREROUTING hook) before the filter section; a read-back then finds nothing to do", async () => {
    const k = new FakeKernel();
    const dp = createDataplane({ runner: k, backend: "nft", families: [4, 6], logger });
    const r = await dp.apply(input([{ bridge: "brq1", zone: 7 }]));
    expect(r.chainsWritten).toBe(6);
    const text = k.inputs[k.log.indexOf("iptables-nft-restore --noflush --wait 10")]!;
    expect(text.indexOf("*raw")).toBe(0);
    expect(text.indexOf("*raw")).toBeLessThan(text.indexOf("*filter"));
    expect(text).toContain(`-I PREROUTING 1 ${hookRule("PREROUTING", "raw").spec}`);
    expect(k.rawTables[4].get("pal-PREROUTING")!.map((x) => x.replace(/^-m comment --comment pal:\S+ /, ""))).toEqual(["-i brq1 -j CT --zone 7"]);
    expect(k.rawTables[6].get("PREROUTING")).toHaveLength(1);
    expect(await dp.detectDrift()).toBe(false);
  });

  it("a raw chain or hook of ours that is not desired is removed; a foreign raw chain is not ours", async () => {
    const save = `*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:pal-PREROUTING - [0:0]\n:CT-FOREIGN - [0:0]\n-A PREROUTING -j CT-FOREIGN\n-A PREROUTING -m comment --comment "pal:${hookRule("PREROUTING", "raw").hash}" -j pal-PREROUTING\nCOMMIT\n`;
    const raw = parseIptablesSave(save, "raw");
    expect([...raw.chains.keys()]).toEqual(["pal-PREROUTING"]);
    expect(raw.hookPositions.get("PREROUTING")).toEqual([2]);
    // Only filter chains desired: the raw hook and chain go.
    const d: PlanInput = { chains: new Map(filter.filter((c) => c.family === 4).map((c) => [keyOf(c), c])), sets: new Map(), families: [4], removeUnwanted: true };
    const kernel = { families: { 4: parseIptablesSave(""), 6: parseIptablesSave("") }, raw: { 4: raw, 6: parseIptablesSave("") }, sets: new Map() };
    const plan = planApply(d, kernel);
    expect(plan.restore[4]).toContain(["*raw", ":pal-PREROUTING - [0:0]", "-D PREROUTING 2", "-X pal-PREROUTING", "COMMIT"].join("\n"));
    // And the filter table's own parse does not see raw's chains.
    expect(parseIptablesSave(save).chains.size).toBe(0);
  });
});

describe("the driver's zones", () => {
  let driver: Driver | undefined;
  let ctl: FakeController | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
  });
  const SNAPSHOT: HostUpdate[] = ["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => ({ type: "chain-update" as const, chain: { table: "filter", family: 4, name: n, rules: ["-j DROP"] } }));
  const zoneRules = (k: FakeKernel) => k.rawTables[4].get("pal-PREROUTING")?.map((x) => x.replace(/^-m comment --comment pal:\S+ /, ""));
  async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it("zones from the first apply on; a bridge that gains a workload port after the first in-sync is zoned by the next apply; an unzonable bridge keeps the host from ok", async () => {
    const r = bridges({ tap1: "brq1" }, { brq1: 7 });
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up",
      // One host seen by both readers: the ports through the host check's
      // walk, the ifindexes through the zones' reader.
      readBridges: r, readHost: { interfaces: r.interfaces, isBridgePort: async (n) => r.ports[n] != null, bridgeOf: r.bridgeOf, sysctl: async () => "1" }, interfacePollMs: 20, rulesetMonitor: false });
    await until(() => zoneRules(k) !== undefined, "the zone chain");
    expect(zoneRules(k)).toEqual(["-i brq1 -j CT --zone 7"]);
    await until(() => ctl!.connected(), "connected");
    ctl.send(3, SNAPSHOT, true, { acksForContentOnly: true });
    await driver.firstSync;
    await until(() => ctl!.acks().includes(3), "ok");
    const restores = () => k.log.filter((l) => l.startsWith("iptables-nft-restore")).length;
    const before = restores();
    r.ports.tap2 = "qbr2";
    r.ifindexes.qbr2 = 40;
    await until(() => (zoneRules(k) ?? []).length === 2, "the second bridge zoned");
    expect(zoneRules(k)).toEqual(["-i brq1 -j CT --zone 7", "-i qbr2 -j CT --zone 40"]);
    // Planned from the change, in one restore: the zone in raw, and the
    // new port's guard in filter (the tap joined a bridge: both follow).
    expect(restores()).toBe(before + 1);
    const last = k.inputs[k.log.lastIndexOf("iptables-nft-restore --noflush --wait 10")]!;
    expect(last).toMatch(/^-A pal-PREROUTING .*-i qbr2 -j CT --zone 40$/m);
    expect(last).toMatch(/^-A pal-bgf .*--physdev-in tap2 -m set --match-set pal4b-tap2 src -j RETURN$/m);
    // A bridge whose ifindex is no zone: said in the host's status, never ok.
    r.ports.tap3 = "brbig";
    r.ifindexes.brbig = 99999;
    const applied = () => ctl!.received.flatMap((m) => (m.message?.$case === "applied" ? [m.message.value] : []));
    await until(() => applied().at(-1)?.ok === false, "not ok");
    expect(applied().at(-1)!.error).toContain("brbig (ifindex 99999)");
    expect(driver.hostProblem).toContain("brbig");
    expect(zoneRules(k)).toEqual(["-i brq1 -j CT --zone 7", "-i qbr2 -j CT --zone 40"]);
  });
});

describe("tamper watch on the raw table", () => {
  it("our raw chain and the raw PREROUTING hook chain are ours; other raw chains and other tables' PREROUTING are not", () => {
    expect(touchesOurs("delete rule ip raw pal-PREROUTING handle 4")).toBe(true);
    expect(touchesOurs("delete rule ip6 raw PREROUTING handle 2")).toBe(true);
    expect(touchesOurs("add rule ip raw OUTPUT counter")).toBe(false);
    expect(touchesOurs("add rule ip nat PREROUTING counter")).toBe(false);
  });
});
