// The host-local translation for bridged ports (DESIGN §6.3,
// services/driver/plan/bridge-twins.ts) and the guard it feeds
// (bridge-guard.ts): twins, their reference counts, contested twins, ports
// joining and leaving a bridge, and the incremental changes the planner
// relies on (a reference kept by the changes alone equals a fresh full
// derivation, after random histories).
import { describe, expect, it } from "vitest";
import { chainKey, type MacCheck } from "../../services/contract/host-update.js";
import { BridgeLayer, type BridgeTopology } from "../../services/driver/plan/bridge-twins.js";
import type { Epochs, GoneNets } from "../../services/driver/plan/plan-input.js";
import { renderBridgeChains } from "../../services/driver/plan/bridge-guard.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { mulberry32, pick, randInt } from "../support/prng.js";

const C1 = "pal4ic_aaaaaaaaaaaaaaaaaaaa";
const C2 = "pal4ic_bbbbbbbbbbbbbbbbbbbb";
const topo = (ports: Record<string, string>, physdev = true): BridgeTopology => ({ physdev, ports: new Map(Object.entries(ports)) });

function state(sets: Record<string, string[]>): DesiredState {
  const d = new DesiredState();
  d.apply(Object.entries(sets).map(([name, members]) => ({ type: "ipset-update" as const, name, family: name.startsWith("pal6") ? 6 as const : 4 as const, members })));
  return d;
}
const delta = (d: DesiredState, name: string, added: string[], removed: string[] = []) =>
  d.apply([{ type: "ipset-delta", name, family: name.startsWith("pal6") ? 6 : 4, added, removed }]);
const members = (l: BridgeLayer, d: DesiredState | undefined, name: string) => [...(l.take(d).sets.get(name)?.members ?? [])].sort();

describe("bridge twins", () => {
  it("a member ADDR,tap of a bridged tap gets its twin ADDR,bridge in the same set; the port's set holds ADDR", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0" }));
    const d = state({ [C1]: ["10.0.0.1,tapa", "10.0.0.2,tapz"], "pal4i-inactive": ["10.0.0.3,tapa"], "pal4t-web": ["10.0.0.1"] });
    const v = l.take(d);
    expect([...v.sets.get(C1)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa", "10.0.0.2,tapz"]);
    expect([...v.sets.get("pal4i-inactive")!.members].sort()).toEqual(["10.0.0.3,br0", "10.0.0.3,tapa"]);
    // A hash:net set is the controller's own object, untouched.
    expect(v.sets.get("pal4t-web")).toBe(d.sets.get("pal4t-web"));
    // Inactive addresses pass the guard: the root then drops them as inactive.
    expect([...v.sets.get("pal4b-tapa")!.members].sort()).toEqual(["10.0.0.1", "10.0.0.3"]);
    expect(v.changes).toBeUndefined(); // a new state: planned in full
  });

  it("without br_netfilter: no twins, no per-port sets, no bridge chains (no physdev rule at all)", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4, 6] });
    l.setTopology(topo({ tapa: "br0" }, false));
    const v = l.take(state({ [C1]: ["10.0.0.1,tapa"] }));
    expect([...v.sets.keys()]).toEqual([C1]);
    expect([...v.sets.get(C1)!.members]).toEqual(["10.0.0.1,tapa"]);
    expect([...v.base.values()].flatMap((c) => c.rules).filter((r) => r.includes("physdev") || r.includes("pal-b"))).toEqual([]);
  });

  it("twins are reference-counted: two ports of one bridge holding one address in one set", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0", tapb: "br0" }));
    const d = state({ [C1]: ["10.0.0.1,tapa", "10.0.0.1,tapb"] });
    expect(members(l, d, C1)).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa", "10.0.0.1,tapb"]);
    delta(d, C1, [], ["10.0.0.1,tapa"]);
    const v = l.take(d);
    expect([...v.sets.get(C1)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapb"]);
    expect([...v.sets.get("pal4b-tapa")!.members]).toEqual([]);
    delta(d, C1, [], ["10.0.0.1,tapb"]);
    const w = l.take(d);
    expect([...w.sets.get(C1)!.members]).toEqual([]);
    expect(w.changes!.sets.get(C1)).toEqual(new Set(["10.0.0.1,tapb", "10.0.0.1,br0"]));
  });

  it("a range twin (a CIDR pair) overlapping another port's address on the bridge with other profiles is contested, the other port's own twin kept; the same profiles or the port's own address are no overlap", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0", tapb: "br0" }));
    const [A, P0a, P1c, P0b] = ["pal4i-active", "pal4ip0_aaaaaaaaaaaaaaaa", "pal4ip1_cccccccccccccccc", "pal4ip0_bbbbbbbbbbbbbbbb"];
    // tapa: 10.0.0.1 and the pair 10.0.0.0/24, list [a, c]; tapb: 10.0.0.5, list [b].
    const ra = ["10.0.0.1,tapa", "10.0.0.0/24,tapa"];
    const d = state({ [A]: [...ra, "10.0.0.5,tapb"], [P0a]: ra, [P1c]: ra, [P0b]: ["10.0.0.5,tapb"] });
    let v = l.take(d);
    // A lookup of 10.0.0.5 on the bridge would find tapa's /24 twin in P1c: tapb judged by [b, c]. The range twin is left out.
    for (const set of [A, P0a, P1c]) expect([...v.sets.get(set)!.members].filter((m) => m.endsWith(",br0")).sort(), set).toEqual(set === A ? ["10.0.0.1,br0", "10.0.0.5,br0"] : ["10.0.0.1,br0"]);
    expect([...v.sets.get(P0b)!.members].sort()).toEqual(["10.0.0.5,br0", "10.0.0.5,tapb"]);
    expect(l.contestedPorts().get("tapa")).toMatch(/range 10\.0\.0\.0\/24 overlaps 10\.0\.0\.5 of tapb on bridge br0, with other profiles/);
    expect(l.contestedPorts().has("tapb")).toBe(false);
    // Nor may tapa send from the range on the bridge (as 10.0.0.5 it would be judged by tapb's profiles): its guard set loses it.
    expect([...v.sets.get("pal4b-tapa")!.members].sort()).toEqual(["10.0.0.1"]);
    expect([...v.sets.get("pal4b-tapb")!.members]).toEqual(["10.0.0.5"]);
    // tapb takes tapa's list [a, c]: the same sets, no harm; the range twin is back.
    delta(d, P0b, [], ["10.0.0.5,tapb"]);
    delta(d, P0a, ["10.0.0.5,tapb"]);
    delta(d, P1c, ["10.0.0.5,tapb"]);
    v = l.take(d);
    expect(v.sets.get(P1c)!.members.has("10.0.0.0/24,br0")).toBe(true);
    expect(l.contestedPorts().size).toBe(0);
    expect([...v.sets.get("pal4b-tapa")!.members].sort()).toEqual(["10.0.0.0/24", "10.0.0.1"]);
    // tapb gone: only tapa's own address lies in its range.
    for (const set of [A, P0a, P1c]) delta(d, set, [], ["10.0.0.5,tapb"]);
    v = l.take(d);
    expect(v.sets.get(A)!.members.has("10.0.0.0/24,br0")).toBe(true);
    expect(l.contestedPorts().size).toBe(0);
  });

  it("class layout (an older controller): a twin from ports in two class sets is contested: left out of every set, and both ports say why; resolved, it is back", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0", tapb: "br0", tapc: "br1" }));
    const d = state({ [C1]: ["10.0.0.1,tapa"], [C2]: ["10.0.0.1,tapb", "10.0.0.1,tapc"], "pal4in-a": ["10.0.0.1,tapa", "10.0.0.1,tapb"] });
    const v = l.take(d);
    expect([...v.sets.get(C1)!.members]).toEqual(["10.0.0.1,tapa"]);
    // The other bridge's twin is not contested.
    expect([...v.sets.get(C2)!.members].sort()).toEqual(["10.0.0.1,br1", "10.0.0.1,tapb", "10.0.0.1,tapc"]);
    expect([...v.sets.get("pal4in-a")!.members].sort()).toEqual(["10.0.0.1,tapa", "10.0.0.1,tapb"]);
    const why = l.contestedPorts();
    expect([...why.keys()].sort()).toEqual(["tapa", "tapb"]);
    expect(why.get("tapa")).toMatch(/address 10\.0\.0\.1 is also claimed on bridge br0 by tapb with other profiles: dropped/);
    // b leaves the other class: no longer contested.
    delta(d, C2, [], ["10.0.0.1,tapb"]);
    delta(d, C1, ["10.0.0.1,tapb"]);
    const w = l.take(d);
    expect([...w.sets.get(C1)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa", "10.0.0.1,tapb"]);
    expect([...w.sets.get("pal4in-a")!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa", "10.0.0.1,tapb"]);
    expect(w.changes!.sets.get("pal4in-a")).toContain("10.0.0.1,br0");
    expect(l.contestedPorts().size).toBe(0);
  });

  it("position layout: a twin whose ports list different profiles (they disagree on a position set) is contested; the same lists share it", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0", tapb: "br0" }));
    const [A, P0a, P0b, P1b, N0] = ["pal4i-active", "pal4ip0_aaaaaaaaaaaaaaaa", "pal4ip0_bbbbbbbbbbbbbbbb", "pal4ip1_bbbbbbbbbbbbbbbb", "pal4ipn0-a"];
    const both = ["10.0.0.1,tapa", "10.0.0.1,tapb"];
    // Both ports list [a] (a VRRP address on two ports of one group): the twin is shared.
    const d = state({ [A]: both, [P0a]: both, [N0]: both });
    let v = l.take(d);
    for (const set of [A, P0a, N0]) expect([...v.sets.get(set)!.members].sort(), set).toEqual(["10.0.0.1,br0", ...both]);
    expect(l.contestedPorts().size).toBe(0);
    // tapb's list becomes [a, b]: b at position 1 is tapb's alone.
    d.apply([{ type: "ipset-update", name: P1b, family: 4, members: ["10.0.0.1,tapb"] }]);
    v = l.take(d);
    for (const set of [A, P0a, N0]) expect([...v.sets.get(set)!.members].sort(), set).toEqual(both);
    expect([...v.sets.get(P1b)!.members]).toEqual(["10.0.0.1,tapb"]);
    expect([...l.contestedPorts().keys()].sort()).toEqual(["tapa", "tapb"]);
    // tapb's list becomes [b]: position 0 disagrees.
    delta(d, P0a, [], ["10.0.0.1,tapb"]);
    delta(d, P1b, [], ["10.0.0.1,tapb"]);
    d.apply([{ type: "ipset-update", name: P0b, family: 4, members: ["10.0.0.1,tapb"] }]);
    v = l.take(d);
    expect([...v.sets.get(A)!.members].sort()).toEqual(both);
    expect(l.contestedPorts().get("tapb")).toMatch(/address 10\.0\.0\.1 is also claimed on bridge br0 by tapa with other profiles/);
    // tapb deactivated (out of the active and position sets): tapa has the twin again.
    delta(d, A, [], ["10.0.0.1,tapb"]);
    delta(d, P0b, [], ["10.0.0.1,tapb"]);
    delta(d, N0, [], ["10.0.0.1,tapb"]);
    v = l.take(d);
    expect([...v.sets.get(A)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa"]);
    expect([...v.sets.get(P0a)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa"]);
    expect(l.contestedPorts().size).toBe(0);
  });

  it("a tap joining a bridge gets twins and its port sets and guard leaves; leaving, they go", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4, 6] });
    l.setTopology(topo({}));
    const d = state({ [C1]: ["10.0.0.1,tapa"], "pal6ic_aaaaaaaaaaaaaaaaaaaa": ["fd00::1,tapa"] });
    l.take(d);
    expect(l.setTopology(topo({ tapa: "br0" }))).toBe(true);
    const v = l.take(d);
    expect([...v.sets.get(C1)!.members].sort()).toEqual(["10.0.0.1,br0", "10.0.0.1,tapa"]);
    expect([...v.sets.get("pal6ic_aaaaaaaaaaaaaaaaaaaa")!.members].sort()).toEqual(["fd00::1,br0", "fd00::1,tapa"]);
    expect([...v.sets.get("pal6b-tapa")!.members]).toEqual(["fd00::1"]);
    expect(v.changes!.sets.get("pal4b-tapa")).toBe("all");
    expect(v.changes!.chains).toContain(chainKey(4, "pal-bgf"));
    expect(v.base.get(chainKey(4, "pal-bgf"))!.rules).toContain("-m physdev --physdev-in tapa -m set --match-set pal4b-tapa src -j RETURN");
    // Same topology again: nothing to do.
    expect(l.setTopology(topo({ tapa: "br0" }))).toBe(false);
    // Moved to another bridge: the twin follows.
    l.setTopology(topo({ tapa: "br9" }));
    expect(members(l, d, C1)).toEqual(["10.0.0.1,br9", "10.0.0.1,tapa"]);
    l.setTopology(topo({}));
    const w = l.take(d);
    expect([...w.sets.get(C1)!.members]).toEqual(["10.0.0.1,tapa"]);
    expect(w.sets.has("pal4b-tapa")).toBe(false);
    expect(w.changes!.sets.get("pal4b-tapa")).toBe("all");
  });

  it("before the first snapshot: only the per-port sets (empty), so the guard's references exist", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4] });
    l.setTopology(topo({ tapa: "br0" }));
    const v = l.take(undefined);
    expect([...v.sets.keys()]).toEqual(["pal4b-tapa"]);
    expect(v.sets.get("pal4b-tapa")!.members.size).toBe(0);
  });

  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`random history (seed ${seed}): a reference kept from the changes alone equals a full derivation`, () => {
      const rnd = mulberry32(seed);
      const sets = [C1, C2, "pal4in-a", "pal4i-inactive", "pal4i-nomac", "pal4t-x"];
      const taps = ["tapa", "tapb", "tapc", "tapd"];
      const addrs = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
      const d = state({});
      const macs: (MacCheck | undefined)[] = [undefined, { mac: "02:00:00:00:00:01" }, { mac: "02:00:00:00:00:02" },
        { entries: [{ net: "2001:db8::1", mac: "02:00:00:00:00:01" }, { net: "2001:db8:1::/64", mac: "00:00:5E:00:01:07" }] }];
      let ports: Record<string, string> = {};
      let physdev = true;
      // Revocation (DESIGN §6.14): policy epochs and departed addresses move
      // the hook chains alone; the bridge trees must not go stale meanwhile.
      const l = new BridgeLayer({ prefixes: ["tap"], families: [4, 6], epochs: { 4: 1, 6: 1 } });
      let epochs: Epochs = { 4: 1, 6: 1 };
      let gone: GoneNets = {};
      l.setTopology(topo(ports));
      const ref = new Map<string, Set<string>>();
      const refChains = new Map<string, string[]>();
      const adopt = (v: ReturnType<BridgeLayer["take"]>) => {
        ref.clear();
        for (const [n, s] of v.sets) ref.set(n, new Set(s.members));
        refChains.clear();
        for (const [k, c] of v.base) refChains.set(k, [...c.rules]);
      };
      adopt(l.take(d));
      for (let step = 0; step < 300; step++) {
        const r = rnd();
        if (r < 0.15) {
          ports = { ...ports };
          const tap = pick(rnd, taps);
          if (ports[tap] && rnd() < 0.5) delete ports[tap];
          else ports[tap] = pick(rnd, ["br0", "br1"]);
          physdev = rnd() > 0.1;
          l.setTopology(topo(ports, physdev));
        } else if (r < 0.18) {
          epochs = { 4: epochs[4]! + randInt(rnd, 2), 6: epochs[6]! + randInt(rnd, 2) };
          gone = rnd() < 0.5 ? {} : { 4: [pick(rnd, addrs) + "/32"] };
          l.setRevocation(epochs, gone, false);
        } else if (r < 0.2) {
          d.apply([{ type: "ipset-update", name: pick(rnd, sets.slice(0, 5)), family: 4, members: taps.filter(() => rnd() < 0.3).map((t) => `${pick(rnd, addrs)},${t}`) }]);
        } else if (r < 0.23) {
          d.apply([{ type: "ipset-remove", name: pick(rnd, sets), family: 4 }]);
        } else if (r < 0.4) {
          // Endpoints with their IPv6 MAC checks: moved, changed, removed, two on one tap.
          const key = pick(rnd, ["h/o/w1/e", "h/o/w2/e", "h/o/w3/e"]);
          const mac6 = pick(rnd, macs);
          if (rnd() < 0.2) d.apply([{ type: "endpoint-remove", key }]);
          else d.apply([mac6 ? { type: "endpoint-update", key, interfaceName: pick(rnd, taps), mac6 } : { type: "endpoint-update", key, interfaceName: pick(rnd, taps) }]);
        } else {
          const name = pick(rnd, sets);
          const m = name === "pal4t-x" ? pick(rnd, addrs) : `${pick(rnd, addrs)},${pick(rnd, taps)}`;
          if (rnd() < 0.5) delta(d, name, [m]);
          else delta(d, name, [], [m]);
        }
        if (randInt(rnd, 3) !== 0) continue;
        const v = l.take(d);
        expect(v.changes).toBeDefined();
        // The planner's view: only what the changes name is compared.
        for (const [name, touched] of v.changes!.sets) {
          const want = v.sets.get(name);
          if (touched === "all" || !want || !ref.has(name)) {
            if (want) ref.set(name, new Set(want.members));
            else ref.delete(name);
            continue;
          }
          const have = ref.get(name)!;
          for (const m of touched) if (want.members.has(m)) have.add(m); else have.delete(m);
        }
        for (const k of v.changes!.chains) {
          const c = v.base.get(k);
          if (c) refChains.set(k, [...c.rules]);
          else refChains.delete(k);
        }
        // A fresh layer derives everything from scratch.
        const fresh = new BridgeLayer({ prefixes: ["tap"], families: [4, 6], epochs });
        fresh.setTopology(topo(ports, physdev));
        fresh.setRevocation(epochs, gone, false);
        const f = fresh.take(d);
        // The layer's own chains (bridge trees cached across revocations) equal a fresh rendering.
        expect(Object.fromEntries([...v.base].map(([k, c]) => [k, c.rules] as const).sort())).toEqual(Object.fromEntries([...f.base].map(([k, c]) => [k, c.rules] as const).sort()));
        const norm = (m: Map<string, Set<string>> | ReadonlyMap<string, { members: ReadonlySet<string> }>) =>
          Object.fromEntries([...m].map(([n, s]) => [n, [...("members" in s ? s.members : s)].sort()]).sort());
        expect(norm(ref)).toEqual(norm(v.sets));
        expect(norm(v.sets)).toEqual(norm(f.sets));
        expect(Object.fromEntries([...refChains].sort())).toEqual(Object.fromEntries([...f.base].map(([k, c]) => [k, c.rules] as const).sort()));
        // Contested twins are in no set.
        for (const [tap, why] of l.contestedPorts()) {
          const addr = /address (\S+) /.exec(why)![1]!;
          for (const [n, s] of v.sets) if (/^pal4i/.test(n)) expect(s.members.has(`${addr},${ports[tap]}`)).toBe(false);
        }
      }
    });
  }
});

describe("bridge guard rendering", () => {
  it("from a port (allowances accepted through pal-ct-admit, DESIGN §6.14): leaves RETURN on the port's set, every node ends in its report and DROP; to a port by destination", () => {
    const [from, to, gf, gt] = renderBridgeChains(4, ["tapb", "tapa"]);
    expect(from!.name).toBe("pal-br-from");
    expect(from!.rules[0]).toBe("-p udp -m udp --sport 68 --dport 67 -g pal-ct-admit");
    expect(from!.rules.at(-1)).toBe("-j pal-bgf");
    expect(from!.rules).toContain("-p udp -m udp --sport 67 --dport 68 -j DROP");
    expect(to!.rules).toEqual(["-p udp -m udp --sport 67 --dport 68 -g pal-ct-admit", "-j pal-bgt"]);
    expect(gf!.rules.slice(0, 2)).toEqual([
      "-m physdev --physdev-in tapa -m set --match-set pal4b-tapa src -j RETURN",
      "-m physdev --physdev-in tapb -m set --match-set pal4b-tapb src -j RETURN",
    ]);
    expect(gf!.rules.at(-2)).toMatch(/-j NFLOG .* --nflog-prefix pal:n:pal-bgf$/);
    expect(gf!.rules.at(-1)).toBe("-j DROP");
    expect(gt!.rules[0]).toBe("-m physdev --physdev-out tapa --physdev-is-bridged -m set --match-set pal4b-tapa dst -j RETURN");
  });

  it("IPv6: link-local and unspecified ND before the guard, RA and DHCPv6 server from a port dropped, ND from its own addresses after the guard", () => {
    const [from, to] = renderBridgeChains(6, ["tapa"]);
    const at = (r: string) => from!.rules.indexOf(r);
    const guard = at("-j pal-bgf");
    expect(at("-s fe80::/10 -p icmpv6 -m icmp6 --icmpv6-type 135 -g pal-ct-admit")).toBeLessThan(guard);
    expect(at("-s ::/128 -p icmpv6 -m icmp6 --icmpv6-type 143 -g pal-ct-admit")).toBeLessThan(guard);
    expect(at("-p icmpv6 -m icmp6 --icmpv6-type 134 -j DROP")).toBeLessThan(guard);
    expect(at("-p udp -m udp --sport 547 -j DROP")).toBeLessThan(guard);
    expect(from!.rules.some((r) => r.includes("-s fe80::/10") && r.includes("type 134"))).toBe(false);
    expect(at("-p icmpv6 -m icmp6 --icmpv6-type 136 -g pal-ct-admit")).toBeGreaterThan(guard);
    expect(to!.rules).toContain("-p icmpv6 -m icmp6 --icmpv6-type 134 -g pal-ct-admit");
    expect(to!.rules).toContain("-p udp -m udp --sport 547 --dport 546 -g pal-ct-admit");
  });

  it("IPv6 from a port: the source must come with a MAC its endpoint may use (one MAC, or per-source entries); IPv4 and the to-port guard are by address only", () => {
    const mac6 = new Map<string, MacCheck>([
      ["tapa", { mac: "02:00:00:00:00:0A" }],
      ["tapb", { entries: [{ net: "2001:db8::b", mac: "02:00:00:00:00:0B" }, { net: "2001:db8:b::/64", mac: "00:00:5E:00:02:07" }, { net: "2001:db8:c::/64" }] }],
    ]);
    const gf6 = renderBridgeChains(6, ["tapa", "tapb", "tapc"], mac6).find((c) => c.name === "pal-bgf")!;
    expect(gf6.rules.slice(0, 5)).toEqual([
      "-m physdev --physdev-in tapa -m set --match-set pal6b-tapa src -m mac --mac-source 02:00:00:00:00:0A -j RETURN",
      "-m physdev --physdev-in tapb -m set --match-set pal6b-tapb src -s 2001:db8::b -m mac --mac-source 02:00:00:00:00:0B -j RETURN",
      "-m physdev --physdev-in tapb -m set --match-set pal6b-tapb src -s 2001:db8:b::/64 -m mac --mac-source 00:00:5E:00:02:07 -j RETURN",
      "-m physdev --physdev-in tapb -m set --match-set pal6b-tapb src -s 2001:db8:c::/64 -j RETURN",
      // No check known (no MAC on the endpoint, or no endpoint: its set is empty).
      "-m physdev --physdev-in tapc -m set --match-set pal6b-tapc src -j RETURN",
    ]);
    expect(gf6.rules.at(-1)).toBe("-j DROP");
    const all4 = renderBridgeChains(4, ["tapa", "tapb"], mac6).flatMap((c) => c.rules);
    expect(all4.filter((r) => r.includes("--mac-source"))).toEqual([]);
    const gt6 = renderBridgeChains(6, ["tapa"], mac6).find((c) => c.name === "pal-bgt")!;
    expect(gt6.rules.filter((r) => r.includes("--mac-source"))).toEqual([]);
  });

  it("the layer follows endpoints' IPv6 MAC checks: a bridged port's leaf changes with its endpoint's, two endpoints on one tap render none, a routed tap's changes nothing", () => {
    const l = new BridgeLayer({ prefixes: ["tap"], families: [4, 6] });
    l.setTopology(topo({ tapa: "br0" }));
    const d = state({});
    const leafA = (v: ReturnType<BridgeLayer["take"]>) => v.base.get(chainKey(6, "pal-bgf"))!.rules.filter((r) => r.includes("tapa"));
    d.apply([{ type: "endpoint-update", key: "h/o/a/e", interfaceName: "tapa", mac6: { mac: "02:00:00:00:00:0A" } }]);
    // The first view is planned in full, from the state as it is.
    let v = l.take(d);
    expect(v.changes).toBeUndefined();
    expect(leafA(v)).toEqual(["-m physdev --physdev-in tapa -m set --match-set pal6b-tapa src -m mac --mac-source 02:00:00:00:00:0A -j RETURN"]);
    // A new MAC: the guard chain is named in the changes.
    d.apply([{ type: "endpoint-update", key: "h/o/a/e", interfaceName: "tapa", mac6: { mac: "02:00:00:00:00:0C" } }]);
    v = l.take(d);
    expect(v.changes!.chains.has(chainKey(6, "pal-bgf"))).toBe(true);
    expect(leafA(v)[0]).toContain("--mac-source 02:00:00:00:00:0C");
    // A second endpoint on the same interface: contested, no MAC of either.
    d.apply([{ type: "endpoint-update", key: "h/o/b/e", interfaceName: "tapa", mac6: { mac: "02:00:00:00:00:0B" } }]);
    v = l.take(d);
    expect(leafA(v)).toEqual(["-m physdev --physdev-in tapa -m set --match-set pal6b-tapa src -j RETURN"]);
    // It leaves: the first one's check is back.
    d.apply([{ type: "endpoint-remove", key: "h/o/b/e" }]);
    v = l.take(d);
    expect(leafA(v)[0]).toContain("--mac-source 02:00:00:00:00:0C");
    // An endpoint on a routed tap: no bridge chain changes.
    d.apply([{ type: "endpoint-update", key: "h/o/r/e", interfaceName: "tapr", mac6: { mac: "02:00:00:00:00:0D" } }]);
    v = l.take(d);
    expect([...v.changes!.chains]).toEqual([]);
    // The routed tap joins a bridge: its leaf carries its endpoint's MAC.
    l.setTopology(topo({ tapa: "br0", tapr: "br0" }));
    v = l.take(d);
    expect(v.base.get(chainKey(6, "pal-bgf"))!.rules).toContain("-m physdev --physdev-in tapr -m set --match-set pal6b-tapr src -m mac --mac-source 02:00:00:00:00:0D -j RETURN");
  });

  it("many ports: a prefix tree (fan-out 16), so a new flow crosses O(log ports) rules; every port is reachable", () => {
    const taps = Array.from({ length: 300 }, (_, i) => `tap${i.toString(16).padStart(3, "0")}`);
    const chains = renderBridgeChains(4, taps).filter((c) => c.name.startsWith("pal-bgf"));
    const byName = new Map(chains.map((c) => [c.name, c.rules]));
    for (const c of chains) expect(c.rules.filter((r) => !r.includes("NFLOG") && !r.endsWith("pal-log") && r !== "-j DROP").length).toBeLessThanOrEqual(16);
    // Walk from the root for a few taps, by the tree's own matches.
    for (const tap of [taps[0]!, taps[150]!, taps[299]!]) {
      let chain = "pal-bgf";
      let crossed = 0;
      for (;;) {
        const rules = byName.get(chain)!;
        const leaf = rules.findIndex((r) => r.startsWith(`-m physdev --physdev-in ${tap} -m set`));
        if (leaf >= 0) { crossed += leaf + 1; break; }
        const node = rules.findIndex((r) => { const m = /--physdev-in (\S+)\+ -g (\S+)/.exec(r); return m !== null && tap.startsWith(m[1]!); });
        expect(node).toBeGreaterThanOrEqual(0);
        crossed += node + 1;
        chain = /-g (\S+)/.exec(rules[node]!)![1]!;
      }
      expect(crossed).toBeLessThanOrEqual(48);
    }
  });
});
