// Revoked connections end (DESIGN §6.14), the driver's half without a
// kernel: the base chains with a policy epoch, which applies advance it
// (RevocationWatch), which addresses lose their connections, and the driver
// against an in-memory kernel (support/fake-kernel.ts, whose `conntrack`
// answers as conntrack-tools 1.4.7 does) and an in-process fake controller.
import { afterEach, describe, expect, it } from "vitest";
import type { ChainDef, HostUpdate } from "../../services/calc/index.js";
import { chainKey } from "../../services/contract/host-update.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { conntrackDeleteArgs } from "../../services/driver/kernel/conntrack.js";
import { renderBaseChains } from "../../services/driver/plan/base-chains.js";
import { CT_EPOCH_MASK, CT_PENDING, fastPathMatch, initialEpoch, MAX_EPOCH, nextEpoch, RevocationWatch } from "../../services/driver/plan/revocation.js";
import type { DesiredChanges, DesiredSet } from "../../services/driver/sync/desired-state.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";

const logger = createLogger({ name: "test", level: "silent" });
const strip = (r: string) => r.replace(/^-m comment --comment pal:[0-9a-f]{16} /, "");

describe("base chains with a policy epoch", () => {
  const rules = (epoch: number | undefined, bridged = false) => Object.fromEntries(renderBaseChains(["tap"], 4, bridged, epoch).map((c) => [c.name, c.rules]));

  it("an established packet of a connection judged in this epoch meets its ACCEPT at the same rule as without epochs (no extra rule lookup)", () => {
    for (const bridged of [false, true]) {
      const off = rules(undefined, bridged)["pal-FORWARD"]!;
      const on = rules(7, bridged)["pal-FORWARD"]!;
      // Per form: INVALID first, then the fast path, in the same positions.
      const fastOff = off.map((r, i) => [r, i] as const).filter(([r]) => r.includes("RELATED,ESTABLISHED -j ACCEPT"));
      const fastOn = on.map((r, i) => [r, i] as const).filter(([r]) => r.includes(`${fastPathMatch(7)} -j ACCEPT`));
      expect(fastOn.length).toBe(fastOff.length);
      // Each form's fast path is reached after the same number of rules that form's packet skips.
      expect(fastOn.map(([, i]) => i)).toEqual(fastOff.map(([, i]) => i));
    }
  });

  it("the fast path matches the epoch in the ct mark's high half and requires pending to be clear", () => {
    expect(fastPathMatch(7)).toBe(`-m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark 0x70000/0x${((CT_EPOCH_MASK | CT_PENDING) >>> 0).toString(16)}`);
  });

  it("with an epoch, every accept goes through pal-ct-admit, stale replies to pal-ct-reply; without, plain ACCEPTs and no re-check chain", () => {
    const on = rules(9, true);
    expect(on["pal-FORWARD"]!.filter((r) => /-j ACCEPT$/.test(r)).every((r) => r.includes("--ctstate RELATED"))).toBe(true);
    expect(on["pal-FORWARD"]!.filter((r) => r.endsWith("-g pal-ct-admit")).length).toBe(4); // -i, physdev-in, -o, physdev-out
    expect(on["pal-FORWARD"]!.filter((r) => r.includes("--ctdir REPLY -g pal-ct-reply")).length).toBe(4);
    expect(on["pal-ct-admit"]).toEqual(["-j CONNMARK --set-xmark 0x90000/0xffffc000", "-j MARK --set-xmark 0x0/0x4000000", "-j ACCEPT"]);
    expect(on["pal-ct-reply"]![0]).toBe("-j MARK --set-xmark 0x4000000/0x4000000");
    expect(on["pal-ct-reply"]!.at(-1)).toBe("-g pal-ct-admit");
    // Bridge ports pass their allowances and guard before the roots, as in pal-FORWARD.
    const reply = on["pal-ct-reply"]!;
    expect(reply.indexOf("-m physdev --physdev-in tap+ -j pal-br-from")).toBeLessThan(reply.indexOf("-m physdev --physdev-in tap+ -j pal-from-wl-dispatch"));
    expect(on["pal-INPUT"]!.filter((r) => r.includes("--ctdir REPLY")).every((r) => r.endsWith("-g pal-ct-admit"))).toBe(true);
    // A mid-stream TCP pick-up is checked against the addresses that recently left an endpoint (none here).
    expect(on["pal-FORWARD"]!.filter((r) => r.includes("--ctstate NEW -m tcp ! --tcp-flags SYN,RST,ACK,FIN SYN -j pal-ct-gone")).length).toBe(4);
    expect(on["pal-ct-gone"]).toEqual([]);
    expect(Object.fromEntries(renderBaseChains(["tap"], 6, false, 3, ["fd00::5"]).map((c) => [c.name, c.rules]))["pal-ct-gone"]).toEqual(["-s fd00::5 -j DROP", "-d fd00::5 -j DROP"]);

    const off = rules(undefined, true);
    expect(off["pal-ct-admit"]).toEqual(["-j ACCEPT"]);
    expect(off["pal-ct-reply"]).toBeUndefined();
    expect(off["pal-FORWARD"]!.some((r) => r.includes("connmark") || r.includes("pal-ct-"))).toBe(false);
  });

  it("epochs run 1..65535 and wrap to 1 (0 is a connection no driver judged)", () => {
    expect(nextEpoch(1)).toBe(2);
    expect(nextEpoch(MAX_EPOCH)).toBe(1);
    for (let i = 0; i < 100; i++) {
      const e = initialEpoch();
      expect(e >= 1 && e <= MAX_EPOCH).toBe(true);
    }
    expect(initialEpoch(() => 0.99999999)).toBeLessThanOrEqual(MAX_EPOCH);
    expect(initialEpoch(() => 0)).toBe(1);
  });
});

describe("RevocationWatch: which applies may revoke, which addresses leave", () => {
  const chain = (name: string, rules: string[], family: 4 | 6 = 4): [string, ChainDef] => [chainKey(family, name), { table: "filter", family, name, rules }];
  const set = (family: 4 | 6, ...members: string[]): DesiredSet => ({ family, members: new Set(members) });
  const changes = (o: { chains?: string[]; sets?: [string, string[] | "all"][]; endpoints?: string[] }): DesiredChanges => ({
    chains: new Set(o.chains ?? []),
    sets: new Map((o.sets ?? []).map(([n, m]) => [n, m === "all" ? "all" : new Set(m)])),
    endpoints: new Set(o.endpoints ?? []),
  });

  /**
   * A host: an allow-only tag set, a set a DROP rule names, a set an allow
   * rule names negated, the active and inactive sets (DESIGN §6.5), a
   * position chain with a missing line.
   */
  function host() {
    const chains = new Map([
      chain("pal-pi-web", ["-m set --match-set pal4t-friends src -j MARK --set-xmark 0x1000000/0x1000000", "-m set --match-set pal4t-bad src -j DROP", "-m set ! --match-set pal4t-notme src -j MARK --set-xmark 0x1000000/0x1000000"]),
      chain("pal-from-wl-dispatch", ["-m set --match-set pal4i-inactive src,src -j DROP", "-m set --match-set pal4i-active src,src -g pal-cf"]),
      chain("pal-cf", ["-j MARK --set-xmark 0x0/0x1000000", "-j pal-cf0", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j DROP"]),
      chain("pal-cf0", ["-m set --match-set pal4ix0 src,src -j DROP", "-m set --match-set pal4ip0_web src,src -g pal-po-web"]),
    ]);
    const sets = new Map<string, DesiredSet>([
      ["pal4t-friends", set(4, "10.0.0.1")], ["pal4t-bad", set(4)], ["pal4t-notme", set(4)],
      ["pal4i-active", set(4, "10.0.0.5,tapa", "10.0.0.6,tapb")], ["pal4i-inactive", set(4)],
      ["pal4ip0_web", set(4, "10.0.0.5,tapa")], ["pal4ix0", set(4, "10.0.0.6,tapb")],
      ["pal6i-active", set(6, "fd00::5,tapa")],
    ]);
    const endpoints = new Map([["hv/o/a/e", "tapa"], ["hv/o/b/e", "tapb"]]);
    const w = new RevocationWatch([4, 6]);
    // The first apply of a state is planned in full: it may revoke anything.
    const first = w.observe({ chains, sets, endpoints }, undefined);
    expect(first).toMatchObject({ bump: [4, 6], gone: [] });
    expect(first.arrived.map((a) => `${a.family} ${a.net}`).sort()).toEqual(["4 10.0.0.5", "4 10.0.0.6", "6 fd00::5"]);
    return { w, chains, sets, endpoints };
  }

  it("a member added to a set only allow rules use, a new chain: nothing to revoke (no epoch, no cost)", () => {
    const { w, chains, sets, endpoints } = host();
    sets.get("pal4t-friends")!.members.add("10.0.0.2");
    chains.set(...chain("pal-pi-new", ["-j MARK --set-xmark 0x1000000/0x1000000"]));
    expect(w.observe({ chains, sets, endpoints }, changes({ chains: [chainKey(4, "pal-pi-new")], sets: [["pal4t-friends", ["10.0.0.2"]]] }))).toMatchObject({ bump: [], gone: [] });
  });

  it("a member added to a set a DROP rule names, or an allow rule names negated: the family's epoch advances", () => {
    for (const name of ["pal4t-bad", "pal4t-notme"]) {
      const { w, chains, sets, endpoints } = host();
      sets.get(name)!.members.add("10.0.0.9");
      expect(w.observe({ chains, sets, endpoints }, changes({ sets: [[name, ["10.0.0.9"]]] })).bump).toEqual([4]);
    }
  });

  it("a member removed from any set, a set replaced wholesale, an existing rule chain changed: the epoch advances", () => {
    let h = host();
    h.sets.get("pal4t-friends")!.members.delete("10.0.0.1");
    expect(h.w.observe(h, changes({ sets: [["pal4t-friends", ["10.0.0.1"]]] })).bump).toEqual([4]);
    h = host();
    expect(h.w.observe(h, changes({ sets: [["pal6i-active", "all"]] })).bump).toEqual([6]);
    h = host();
    h.chains.set(...chain("pal-pi-web", ["-j MARK --set-xmark 0x1000000/0x1000000"]));
    expect(h.w.observe(h, changes({ chains: [chainKey(4, "pal-pi-web")] })).bump).toEqual([4]);
  });

  it("a set new in this apply only gains members: no epoch (a bridge port's own set when its tap joins), unless a DROP rule names it", () => {
    const h = host();
    h.sets.set("pal4b-tapc", set(4, "10.0.0.7"));
    expect(h.w.observe(h, changes({ sets: [["pal4b-tapc", "all"]] })).bump).toEqual([]);
    h.chains.set(...chain("pal-pi-deny", ["-m set --match-set pal4t-new src -j DROP"]));
    h.sets.set("pal4t-new", set(4, "10.0.0.8"));
    expect(h.w.observe(h, changes({ chains: [chainKey(4, "pal-pi-deny")], sets: [["pal4t-new", "all"]] })).bump).toEqual([4]);
  });

  it("a bridge's twin (ADDR,<bridge>) leaving is no address of its own: only the tap's member is gone", () => {
    const w = new RevocationWatch([4], (iface) => iface.startsWith("tap"));
    const sets = new Map<string, DesiredSet>([["pal4i-active", set(4, "10.0.0.5,tapa", "10.0.0.5,brq1")]]);
    const endpoints = new Map([["hv/o/a/e", "tapa"]]);
    w.observe({ chains: new Map(), sets, endpoints }, undefined);
    sets.get("pal4i-active")!.members.clear();
    endpoints.clear();
    expect(w.observe({ chains: new Map(), sets, endpoints }, changes({ sets: [["pal4i-active", ["10.0.0.5,tapa", "10.0.0.5,brq1"]]], endpoints: ["hv/o/a/e"] })).gone)
      .toEqual([{ family: 4, net: "10.0.0.5", iface: "tapa", stillOnHost: false }]);
  });

  it("the dispatch chains (roots, workload chains, position trees) change only with set members that change too: by themselves, no epoch", () => {
    const h = host();
    // A profile new at position 0 (its line), a second position (the workload chain's jump and its chains), a tree node.
    h.chains.set(...chain("pal-cf0", ["-m set --match-set pal4ix0 src,src -j DROP", "-m set --match-set pal4ip0_web src,src -g pal-po-web", "-m set --match-set pal4ip0_db src,src -g pal-po-db"]));
    h.chains.set(...chain("pal-cf", ["-j MARK --set-xmark 0x0/0x1000000", "-j pal-cf0", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j pal-cf1", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j DROP"]));
    h.chains.set(...chain("pal-cf1", ["-m set --match-set pal4ip1_web src,src -g pal-po-web"]));
    h.chains.set(...chain("pal-cf0-ab", ["-m set --match-set pal4ip0_abc src,src -g pal-po-abc", "-j DROP"]));
    expect(h.w.observe(h, changes({ chains: ["pal-cf0", "pal-cf", "pal-cf1", "pal-cf0-ab"].map((n) => chainKey(4, n)) })).bump).toEqual([]);
    h.chains.set(...chain("pal-cf0-ab", ["-j DROP"]));
    expect(h.w.observe(h, changes({ chains: [chainKey(4, "pal-cf0-ab")] })).bump).toEqual([]);
    // A profile chain is no dispatch chain.
    h.chains.set(...chain("pal-pi-web", ["-j DROP"]));
    expect(h.w.observe(h, changes({ chains: [chainKey(4, "pal-pi-web")] })).bump).toEqual([4]);
  });

  it("an endpoint whose profile at a position is deleted (into the position's missing set, which a DROP names): the epoch advances; into a profile's position set: none", () => {
    let h = host();
    h.sets.get("pal4ix0")!.members.add("10.0.0.5,tapa");
    expect(h.w.observe(h, changes({ sets: [["pal4ix0", ["10.0.0.5,tapa"]]] })).bump).toEqual([4]);
    h = host();
    h.sets.get("pal4ip0_web")!.members.add("10.0.0.6,tapb");
    expect(h.w.observe(h, changes({ sets: [["pal4ip0_web", ["10.0.0.6,tapb"]]] })).bump).toEqual([]);
  });

  it("an older controller's class layout (class sets pal4ic_, tree nodes pal-cfn-) is still understood while drivers are upgraded first", () => {
    const w = new RevocationWatch([4]);
    const chains = new Map([chain("pal-from-wl-dispatch", ["-m set --match-set pal4ic_a src,src -g pal-cf_a"]), chain("pal-cfn-a", ["-j DROP"])]);
    const sets = new Map<string, DesiredSet>([["pal4ic_a", set(4, "10.0.0.5,tapa")], ["pal4ic_b", set(4)]]);
    const endpoints = new Map([["hv/o/a/e", "tapa"]]);
    w.observe({ chains, sets, endpoints }, undefined);
    chains.set(...chain("pal-cfn-a", ["-m set --match-set pal4ic_a src,src -g pal-cf_a", "-j DROP"]));
    expect(w.observe({ chains, sets, endpoints }, changes({ chains: [chainKey(4, "pal-cfn-a")] })).bump).toEqual([]);
    // Moving between class sets keeps the address; leaving them all loses it.
    sets.get("pal4ic_a")!.members.delete("10.0.0.5,tapa");
    sets.get("pal4ic_b")!.members.add("10.0.0.5,tapa");
    expect(w.observe({ chains, sets, endpoints }, changes({ sets: [["pal4ic_a", ["10.0.0.5,tapa"]], ["pal4ic_b", ["10.0.0.5,tapa"]]] })).gone).toEqual([]);
    sets.get("pal4ic_b")!.members.clear();
    endpoints.clear();
    expect(w.observe({ chains, sets, endpoints }, changes({ sets: [["pal4ic_b", ["10.0.0.5,tapa"]]], endpoints: ["hv/o/a/e"] })).gone).toEqual([{ family: 4, net: "10.0.0.5", iface: "tapa", stillOnHost: false }]);
  });

  it("an endpoint deactivated (active set to inactive) keeps its addresses (not gone); one deleted loses them", () => {
    const h = host();
    h.sets.get("pal4i-active")!.members.delete("10.0.0.5,tapa");
    h.sets.get("pal4i-inactive")!.members.add("10.0.0.5,tapa");
    expect(h.w.observe(h, changes({ sets: [["pal4i-active", ["10.0.0.5,tapa"]], ["pal4i-inactive", ["10.0.0.5,tapa"]]] })).gone).toEqual([]);
    h.sets.get("pal4i-active")!.members.delete("10.0.0.6,tapb");
    h.endpoints.delete("hv/o/b/e");
    expect(h.w.observe(h, changes({ sets: [["pal4i-active", ["10.0.0.6,tapb"]]], endpoints: ["hv/o/b/e"] })).gone).toEqual([{ family: 4, net: "10.0.0.6", iface: "tapb", stillOnHost: false }]);
  });

  it("an endpoint replaced by another at the same interface and addresses (same profiles, so no set changes at all): every address of the interface is gone", () => {
    const h = host();
    h.endpoints.delete("hv/o/a/e");
    h.endpoints.set("hv/o/a2/e", "tapa");
    const v = h.w.observe(h, changes({ endpoints: ["hv/o/a/e", "hv/o/a2/e"] }));
    // Still on the host (the new endpoint holds them): deleted before the apply is reported.
    expect(v.gone.sort((x, y) => x.family - y.family)).toEqual([{ family: 4, net: "10.0.0.5", iface: "tapa", stillOnHost: true }, { family: 6, net: "fd00::5", iface: "tapa", stillOnHost: true }]);
  });

  it("a full plan (a new snapshot) finds replaced endpoints and departed addresses by comparing with what it saw", () => {
    const h = host();
    h.endpoints.delete("hv/o/b/e");
    h.endpoints.set("hv/o/b2/e", "tapb");
    h.sets.get("pal6i-active")!.members.clear();
    const v = h.w.observe(h, undefined);
    expect(v.bump).toEqual([4, 6]);
    expect(v.gone.map((g) => `${g.family} ${g.net} ${g.iface} ${g.stillOnHost}`).sort()).toEqual(["4 10.0.0.6 tapb true", "6 fd00::5 tapa false"]);
  });
});

describe("conntrack deletions", () => {
  it("by original source and by original destination, in the zone when known", () => {
    expect(conntrackDeleteArgs({ family: 4, net: "10.0.0.5", zone: 12 })).toEqual([["-D", "-f", "ipv4", "-w", "12", "-s", "10.0.0.5"], ["-D", "-f", "ipv4", "-w", "12", "-d", "10.0.0.5"]]);
    expect(conntrackDeleteArgs({ family: 6, net: "fd00::/64" })).toEqual([["-D", "-f", "ipv6", "-s", "fd00::/64"], ["-D", "-f", "ipv6", "-d", "fd00::/64"]]);
  });
});

describe("driver: addresses that leave an endpoint lose their connections", () => {
  let ctl: FakeController | undefined;
  let driver: Driver | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
    driver = undefined;
    ctl = undefined;
  });

  const c = (name: string, rules: string[]): HostUpdate => ({ type: "chain-update", chain: { table: "filter", family: 4, name, rules } });
  const snapshot: HostUpdate[] = [
    c("pal-from-wl-dispatch", ["-m set --match-set pal4ic_x src,src -j RETURN", "-j DROP"]),
    c("pal-to-wl-dispatch", ["-m set --match-set pal4ic_x dst,dst -j RETURN", "-j DROP"]),
    c("pal-wl-to-host", ["-j DROP"]),
    { type: "ipset-update", name: "pal4ic_x", family: 4, members: ["10.0.0.5,tapa", "10.0.0.6,tapb"] },
    { type: "endpoint-update", key: "hv1/o/a/e", interfaceName: "tapa" },
    { type: "endpoint-update", key: "hv1/o/b/e", interfaceName: "tapb" },
  ];

  const failures = () => ctl!.received.flatMap((m) => (m.message?.$case === "applied" && !m.message.value.ok ? [m.message.value] : []));

  async function start(k: FakeKernel) {
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false });
    await until(() => ctl!.connected(), "connected");
    ctl.send(1, snapshot, true);
    await until(() => driver!.appliedRevision === 1, "revision 1");
  }

  it("an endpoint deleted: its address's entries are deleted (both directions), others stay; the apply answers for it", async () => {
    const k = new FakeKernel();
    k.conntrack.push({ family: 4, src: "10.0.0.6", dst: "10.9.0.1", zone: 0 }, { family: 4, src: "10.9.0.2", dst: "10.0.0.6", zone: 0 }, { family: 4, src: "10.0.0.5", dst: "10.9.0.1", zone: 0 });
    await start(k);
    ctl!.send(2, [{ type: "ipset-delta", name: "pal4ic_x", family: 4, added: [], removed: ["10.0.0.6,tapb"] }, { type: "endpoint-remove", key: "hv1/o/b/e" }]);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    // In the background: the address left the host.
    await until(() => driver!.counters.conntrackDeleted === 2, "the background deletion");
    expect(k.conntrack).toEqual([{ family: 4, src: "10.0.0.5", dst: "10.9.0.1", zone: 0 }]);
    // Its mid-stream TCP pick-ups are refused for a while (a successor at the address inherits nothing).
    expect(k.chain(4, "pal-ct-gone")!.map(strip)).toEqual(["-s 10.0.0.6 -j DROP", "-d 10.0.0.6 -j DROP"]);
  });

  it("conntrack failing where a new endpoint holds the address: the revision is reported failed, not applied, and retried until the entries are gone", async () => {
    const k = new FakeKernel();
    k.conntrack.push({ family: 4, src: "10.9.0.2", dst: "10.0.0.6", zone: 0 });
    await start(k);
    k.conntrackFailure = "conntrack v1.4.7 (conntrack-tools): Operation failed: No such file or directory";
    ctl!.send(2, [{ type: "endpoint-remove", key: "hv1/o/b/e" }, { type: "endpoint-update", key: "hv1/o/b2/e", interfaceName: "tapb" }]);
    await until(() => failures().length > 0, "a failed apply reported");
    expect(failures()[0]!.revision).toBe(2);
    expect(failures()[0]!.error).toMatch(/could not end the connections of addresses that left an endpoint \(10\.0\.0\.6@tapb\)/);
    expect(ctl!.acks()).not.toContain(2);
    k.conntrackFailure = undefined;
    await until(() => ctl!.acks().includes(2), "revision 2 applied after the retry", 15_000);
    expect(k.conntrack).toEqual([]);
  });

  it("an address that left the host is deleted in the background: the revision is reported at once (its connections already find no endpoint); a failure there is reported by the next apply and retried", async () => {
    const k = new FakeKernel();
    k.conntrack.push({ family: 4, src: "10.0.0.6", dst: "10.9.0.1", zone: 0 });
    await start(k);
    k.conntrackFailure = "conntrack v1.4.7 (conntrack-tools): Operation failed: No such file or directory";
    ctl!.send(2, [{ type: "ipset-delta", name: "pal4ic_x", family: 4, added: [], removed: ["10.0.0.6,tapb"] }, { type: "endpoint-remove", key: "hv1/o/b/e" }]);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    await until(() => failures().length > 0, "the background failure reported");
    expect(failures()[0]!.error).toMatch(/could not end the connections .*10\.0\.0\.6@tapb/);
    k.conntrackFailure = undefined;
    await until(() => k.conntrack.length === 0, "the entries deleted on retry", 15_000);
  });

  it("an address brought back before its background deletion ran waits for it: the apply that adds it deletes first", async () => {
    const k = new FakeKernel();
    k.conntrack.push({ family: 4, src: "10.9.0.2", dst: "10.0.0.6", zone: 0 });
    await start(k);
    // The deletion hangs until released: the address comes back meanwhile.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const run = k.run.bind(k);
    k.run = async (cmd, args, input) => { if (cmd === "conntrack") await held; return run(cmd, args, input); };
    ctl!.send(2, [{ type: "ipset-delta", name: "pal4ic_x", family: 4, added: [], removed: ["10.0.0.6,tapb"] }, { type: "endpoint-remove", key: "hv1/o/b/e" }]);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    ctl!.send(3, [{ type: "ipset-delta", name: "pal4ic_x", family: 4, added: ["10.0.0.6,tapc"], removed: [] }, { type: "endpoint-update", key: "hv1/o/c/e", interfaceName: "tapc" }]);
    await new Promise((r) => setTimeout(r, 300));
    expect(ctl!.acks()).not.toContain(3);
    release();
    await until(() => ctl!.acks().includes(3), "revision 3 acknowledged once the deletion ran");
    expect(k.conntrack).toEqual([]);
  });

  it("an endpoint replaced at the same interface and addresses (no set change at all): the old one's entries are deleted", async () => {
    const k = new FakeKernel();
    k.conntrack.push({ family: 4, src: "10.9.0.2", dst: "10.0.0.5", zone: 0 }, { family: 4, src: "10.9.0.2", dst: "10.0.0.6", zone: 0 });
    await start(k);
    ctl!.send(2, [{ type: "endpoint-remove", key: "hv1/o/a/e" }, { type: "endpoint-update", key: "hv1/o/a2/e", interfaceName: "tapa" }]);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    expect(k.conntrack).toEqual([{ family: 4, src: "10.9.0.2", dst: "10.0.0.6", zone: 0 }]);
  });
});

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
