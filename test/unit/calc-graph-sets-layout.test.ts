// The set-based layout (DESIGN §6.5) in the calculation core: what an
// endpoint change emits, that the rule count does not follow the number of
// endpoints nor the number of profile combinations, and — with a small
// classifier over the rendered state — that every endpoint's packets reach
// its own profiles in its order and nothing else does, also through the
// position trees once a position has more profiles than a node lists.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { positionSet, profileKey } from "../../services/calc/names.js";
import { EMPTIED_BEFORE_DESTROY_RE } from "../../services/contract/dataplane-names.js";
import type { Endpoint } from "../../services/model/index.js";
import { classOf, classify } from "../support/classify.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { endpoint, profile } from "../support/model.js";
import { mulberry32 } from "../support/prng.js";

const PROFILES = ["a", "b", "c", "d", "e", "f", "g"].map((id) => profile({ id, tags: [id], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
const ep = (i: number, ids: string[], extra: Record<string, unknown> = {}) =>
  endpoint({ host: "hv1", workload: `w${i}`, id: "e", name: `tap${i}`, profile_ids: ids, ipv4_nets: [`198.18.${i >> 8}.${i & 255}`], ipv6_nets: [`2001:db8::${i.toString(16)}`], ...extra });

/** What classify says of an endpoint listing `ids` (all existing), outbound and inbound. */
const from = (ids: string[]) => classOf("from", ids.map((id) => `pal-po-${id}`));
const to = (ids: string[]) => classOf("to", ids.map((id) => `pal-pi-${id}`));
/** The sets an active endpoint with this list is a member of, in one family. */
const memberSets = (ids: string[], f: 4 | 6) => [`pal${f}i-active`, ...ids.map((id, k) => positionSet(k, profileKey(id), f))];
const each = (names: string[], d: { added: string[]; removed: string[] }) => Object.fromEntries(names.map((n) => [n, d]));

function graph() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink);
  for (const p of PROFILES) g.upsertProfile(p);
  let rev = 0;
  return { sink, g, flush: () => g.flush(++rev) };
}

/**
 * What the calls since `since` did: per set, the members its deltas added and
 * removed (net of each other, sorted), and every other update's kind. A set
 * rewritten (ipset-update) or a chain touched shows in `other`.
 */
function setChanges(sink: RecordingSink, since: number) {
  const sets: Record<string, { added: string[]; removed: string[] }> = {};
  const other: string[] = [];
  for (const u of sink.callsSince(since).flatMap((c) => c.updates)) {
    if (u.type !== "ipset-delta") {
      other.push(u.type);
      continue;
    }
    const d = (sets[u.name] ??= { added: [], removed: [] });
    for (const m of u.removed) d.added.includes(m) ? d.added.splice(d.added.indexOf(m), 1) : d.removed.push(m);
    for (const m of u.added) d.removed.includes(m) ? d.removed.splice(d.removed.indexOf(m), 1) : d.added.push(m);
  }
  for (const d of Object.values(sets)) { d.added.sort(); d.removed.sort(); }
  return { sets, other: other.sort() };
}


describe("set-based layout", () => {
  it("an endpoint added, re-addressed, deactivated and re-activated, its profiles in use: exactly its set members move, nothing else", () => {
    const { sink, g, flush } = graph();
    for (let i = 1; i <= 3; i++) g.upsertEndpoint(ep(i, ["a", "b"]));
    flush();
    const [c4, c6] = [memberSets(["a", "b"], 4), memberSets(["a", "b"], 6)];
    let mark = sink.calls.length;
    const step = () => {
      const s = setChanges(sink, mark);
      mark = sink.calls.length;
      return s;
    };
    g.upsertEndpoint(ep(4, ["a", "b"]));
    flush();
    // Its IPv4 and IPv6 (address, interface) into the active set and its two position sets of each family, its IPv4 one into the no-MAC set.
    expect(step()).toEqual({
      other: ["endpoint-update"],
      sets: { ...each(c4, { added: ["198.18.0.4,tap4"], removed: [] }), ...each(c6, { added: ["2001:db8::4,tap4"], removed: [] }), "pal4i-nomac": { added: ["198.18.0.4,tap4"], removed: [] } },
    });
    g.upsertEndpoint(ep(4, ["a", "b"], { ipv4_nets: ["198.18.9.9"], ipv6_nets: [] }));
    flush();
    expect(step()).toEqual({
      other: ["endpoint-update"],
      sets: {
        ...each(c4, { added: ["198.18.9.9,tap4"], removed: ["198.18.0.4,tap4"] }),
        ...each(c6, { added: [], removed: ["2001:db8::4,tap4"] }),
        "pal4i-nomac": { added: ["198.18.9.9,tap4"], removed: ["198.18.0.4,tap4"] },
      },
    });
    g.upsertEndpoint(ep(4, ["a", "b"], { state: "inactive" }));
    flush();
    // Out of the active and position sets (and, inactive, it claims no MAC-check member); its pairs into the inactive sets.
    expect(step()).toEqual({
      other: ["endpoint-update"],
      sets: {
        ...each(c4, { added: [], removed: ["198.18.9.9,tap4"] }),
        "pal4i-nomac": { added: [], removed: ["198.18.9.9,tap4"] },
        "pal4i-inactive": { added: ["198.18.0.4,tap4"], removed: [] },
        "pal6i-inactive": { added: ["2001:db8::4,tap4"], removed: [] },
      },
    });
    g.upsertEndpoint(ep(4, ["a", "b"]));
    g.deleteEndpoint("hv1/openstack/w1/e");
    flush();
    expect(step()).toEqual({
      other: ["endpoint-remove", "endpoint-update"],
      sets: {
        ...each(c4, { added: ["198.18.0.4,tap4"], removed: ["198.18.0.1,tap1"] }),
        ...each(c6, { added: ["2001:db8::4,tap4"], removed: ["2001:db8::1,tap1"] }),
        "pal4i-nomac": { added: ["198.18.0.4,tap4"], removed: ["198.18.0.1,tap1"] },
        "pal4i-inactive": { added: [], removed: ["198.18.0.4,tap4"] },
        "pal6i-inactive": { added: [], removed: ["2001:db8::4,tap4"] },
      },
    });
  });

  it("a profile new at a position brings that position's line (a new position its chains); the last endpoint with it there takes them away", () => {
    const { sink, g, flush } = graph();
    g.upsertEndpoint(ep(1, ["a"]));
    flush();
    let mark = sink.calls.length;
    g.upsertEndpoint(ep(2, ["b", "a"])); // order matters: b at position 0, a at position 1
    flush();
    const chains = sink.callsSince(mark).flatMap((c) => c.updates.flatMap((u) => (u.type === "chain-update" && u.chain.family === 4 ? [u.chain.name] : [])));
    expect(chains.filter((c) => /^pal-[cr][ft]/.test(c)).sort()).toEqual(["pal-cf", "pal-cf0", "pal-cf1", "pal-ct", "pal-ct0", "pal-ct1", "pal-rf", "pal-rf0", "pal-rf1", "pal-rt", "pal-rt0", "pal-rt1"]);
    let st = sink.state("hv1").plain();
    expect(classify(st, 4, "to", "198.18.0.2", "tap2")).toBe(to(["b", "a"]));
    expect(classify(st, 4, "to", "198.18.0.1", "tap1")).toBe(to(["a"]));
    mark = sink.calls.length;
    g.deleteEndpoint("hv1/openstack/w2/e");
    flush();
    st = sink.state("hv1").plain();
    expect(Object.keys(st.chains).filter((k) => /:pal-[cr][ft]1/.test(k))).toEqual([]);
    expect(Object.keys(st.sets).filter((k) => k.includes(profileKey("b")) || /^pal[46]ip1/.test(k))).toEqual([]);
    expect(st.chains["4:pal-ct0"]).toEqual([`-m set --match-set ${positionSet(0, profileKey("a"), 4)} dst,dst -g pal-pi-a`, "-j DROP"]);
    expect(st).toEqual(snapshotState(g, "hv1").plain());
  });

  it("the chains follow the profiles at each position, not how they are combined (DESIGN §6.5)", () => {
    const ids = PROFILES.map((p) => p.id);
    const chainsWith = (lists: string[][]) => {
      const { sink, g, flush } = graph();
      lists.forEach((l, i) => g.upsertEndpoint(ep(i + 1, l)));
      flush();
      return sink.state("hv1").plain().chains;
    };
    // Every ordered pair of 7 profiles (42 combinations) against 7 lists that
    // put each profile at each of the two positions once: the same chains.
    const pairs = ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [a, b]));
    const cover = ids.map((a, i) => [a, ids[(i + 1) % ids.length]!]);
    const all = chainsWith(pairs);
    expect(all).toEqual(chainsWith(cover));
    const rules = Object.values(all).reduce((n, r) => n + r.length, 0);
    // Versus one class chain set per combination in the class layout: 42 × 4 chains of 6 lines per family.
    expect(rules).toBeLessThan(42 * 4 * 6);
  });

  it("the rule count does not follow the number of endpoints", () => {
    const rules = (n: number) => {
      const { sink, g, flush } = graph();
      for (let i = 1; i <= n; i++) g.upsertEndpoint(ep(i, [["a"], ["a", "b"], ["c"]][i % 3]!));
      flush();
      return Object.values(sink.state("hv1").plain().chains).reduce((s, r) => s + r.length, 0);
    };
    expect(rules(300)).toBe(rules(9));
  });

  it("MACs: an IPv4 endpoint's by MAC sets (adding one is set members only), IPv6 and nets by the interface tree", () => {
    const { sink, g, flush } = graph();
    const v4 = (i: number, extra: Record<string, unknown> = {}) => ep(i, ["a"], { ipv6_nets: [], mac: `02:00:00:00:00:0${i}`, ...extra });
    for (let i = 1; i <= 3; i++) g.upsertEndpoint(v4(i));
    flush();
    let mark = sink.calls.length;
    g.upsertEndpoint(v4(4));
    flush();
    expect(setChanges(sink, mark)).toEqual({
      other: ["endpoint-update"],
      sets: {
        ...each(memberSets(["a"], 4), { added: ["198.18.0.4,tap4"], removed: [] }),
        "pal4m-198-18": { added: ["198.18.0.4,02:00:00:00:00:04"], removed: [] },
      },
    });
    let st = sink.state("hv1").plain();
    expect(classify(st, 4, "from", "198.18.0.4", "tap4", "02:00:00:00:00:04")).toBe(from(["a"]));
    expect(classify(st, 4, "from", "198.18.0.4", "tap4", "02:00:00:00:00:05")).toBe("DROP:pal-from-wl-mac");
    // Another endpoint's address and MAC, sent from this interface: not this interface's pair.
    expect(classify(st, 4, "from", "198.18.0.3", "tap4", "02:00:00:00:00:03")).toBe("DROP:pal-from-wl-dispatch");
    // Dual stack: the IPv6 side is checked by the tree, a rule per interface (DESIGN §6.5).
    mark = sink.calls.length;
    g.upsertEndpoint(ep(5, ["a"], { mac: "02:00:00:00:00:05" }));
    flush();
    const chains = sink.callsSince(mark).flatMap((c) => c.updates.flatMap((u) => (u.type === "chain-update" ? [`${u.chain.family}:${u.chain.name}`] : [])));
    expect([...new Set(chains)]).toEqual(["6:pal-from-wl-mact"]);
    st = sink.state("hv1").plain();
    expect(classify(st, 6, "from", "2001:db8::5", "tap5", "02:00:00:00:00:05")).toBe(from(["a"]));
    expect(classify(st, 6, "from", "2001:db8::5", "tap5", "02:00:00:00:00:09")).toBe("DROP:pal-from-wl-mact");
    expect(classify(st, 4, "from", "198.18.0.5", "tap5", "02:00:00:00:00:09")).toBe("DROP:pal-from-wl-mac");
    // An endpoint without a MAC: its IPv4 addresses skip the MAC sets.
    g.upsertEndpoint(ep(6, ["a"], { ipv6_nets: [] }));
    flush();
    st = sink.state("hv1").plain();
    expect(classify(st, 4, "from", "198.18.0.6", "tap6", "02:00:00:00:00:07")).toBe(from(["a"]));
    // The first endpoint of a new /16 is set members only too (its MAC set joins the list set).
    mark = sink.calls.length;
    g.upsertEndpoint(v4(7, { ipv4_nets: ["10.77.0.7"] }));
    flush();
    expect(setChanges(sink, mark)).toEqual({
      other: ["endpoint-update", "ipset-update"],
      sets: { ...each(memberSets(["a"], 4), { added: ["10.77.0.7,tap7"], removed: [] }), pal4mac: { added: ["pal4m-10-77"], removed: [] } },
    });
    const created = sink.callsSince(mark).flatMap((c) => c.updates).find((u) => u.type === "ipset-update");
    expect(created).toEqual({ type: "ipset-update", name: "pal4m-10-77", family: 4, members: ["10.77.0.7,02:00:00:00:00:07"] });
    st = sink.state("hv1").plain();
    expect(st.sets["pal4mac"]!.members).toEqual(["pal4m-10-77", "pal4m-198-18"]);
    expect(classify(st, 4, "from", "10.77.0.7", "tap7", "02:00:00:00:00:07")).toBe(from(["a"]));
    expect(classify(st, 4, "from", "10.77.0.7", "tap7", "02:00:00:00:00:08")).toBe("DROP:pal-from-wl-mac");
    // The last endpoint of a /16 takes its MAC set away (out of the list first).
    for (const i of [1, 2, 3, 4, 5, 6, 7]) g.deleteEndpoint(`hv1/openstack/w${i}/e`);
    flush();
    st = sink.state("hv1").plain();
    expect(Object.keys(st.sets).filter((n) => n.startsWith("pal4m-"))).toEqual([]);
    expect(st.sets["pal4mac"]!.members).toEqual([]);
  });

  it("IPv4 has no MAC interface tree (its MACs are in MAC sets): no pal-from-wl-mact and no jump to it; IPv6 has both", () => {
    const { sink, g, flush } = graph();
    g.upsertEndpoint(ep(1, ["a"], { mac: "02:00:00:00:00:01" }));
    flush();
    const st = sink.state("hv1").plain();
    expect(st.chains["4:pal-from-wl-mact"]).toBeUndefined();
    expect(st.chains["4:pal-from-wl-mac"]).toEqual(["-m set --match-set pal4i-nomac src,src -j RETURN", "-m set ! --match-set pal4mac src,src -j DROP"]);
    expect(st.chains["6:pal-from-wl-mac"]).toEqual(["-j pal-from-wl-mact"]);
    expect(st.chains["6:pal-from-wl-mact"]).toEqual(["-i tap1 -m mac ! --mac-source 02:00:00:00:00:01 -j DROP"]);
    expect(st).toEqual(snapshotState(g, "hv1").plain());
    // Nor on a host without endpoints.
    expect(snapshotState(g, "hv-empty").plain().chains["4:pal-from-wl-mact"]).toBeUndefined();
  });

  it("MAC sets hold one MAC per address: shared claims are counted, disagreeing ones fail closed until resolved", () => {
    const { sink, g, flush } = graph();
    const a = (i: number, mac: string, extra: Record<string, unknown> = {}) => ep(i, ["a"], { ipv4_nets: ["198.18.5.5"], ipv6_nets: [], mac, ...extra });
    // Two endpoints (two interfaces) with the same address and MAC: deleting one keeps the other's.
    g.upsertEndpoint(a(1, "02:00:00:00:00:01"));
    g.upsertEndpoint(a(2, "02:00:00:00:00:01"));
    flush();
    g.deleteEndpoint("hv1/openstack/w1/e");
    flush();
    let st = sink.state("hv1").plain();
    expect(st.sets["pal4m-198-18"]!.members).toEqual(["198.18.5.5,02:00:00:00:00:01"]);
    expect(classify(st, 4, "from", "198.18.5.5", "tap2", "02:00:00:00:00:01")).toBe(from(["a"]));
    // Another MAC claims it: neither passes.
    g.upsertEndpoint(a(3, "02:00:00:00:00:03"));
    flush();
    st = sink.state("hv1").plain();
    expect(st.sets["pal4m-198-18"]!.members).toEqual([]);
    expect(classify(st, 4, "from", "198.18.5.5", "tap2", "02:00:00:00:00:01")).toBe("DROP:pal-from-wl-mac");
    expect(classify(st, 4, "from", "198.18.5.5", "tap3", "02:00:00:00:00:03")).toBe("DROP:pal-from-wl-mac");
    // An inactive endpoint claims nothing; deactivating the intruder resolves it.
    g.upsertEndpoint(a(3, "02:00:00:00:00:03", { state: "inactive" }));
    flush();
    st = sink.state("hv1").plain();
    expect(st.sets["pal4m-198-18"]!.members).toEqual(["198.18.5.5,02:00:00:00:00:01"]);
    expect(st).toEqual(snapshotState(g, "hv1").plain());
  });

  it("mid-apply (the new sets, the old chains: the driver's ipset stage done, its iptables stage not yet) no endpoint is judged by profiles other than a prefix of its old or its new list", () => {
    // Members move between position sets in the ipset stage; the lines that
    // find them change in the iptables stage. A packet whose member left a
    // line's set before its new line exists must fail closed, not fall
    // through to the next position's profiles.
    const parse = (d: string) => (d.startsWith("DROP:") ? undefined : d.slice(d.indexOf("[") + 1, -1).split(",").filter(Boolean));
    const prefixOf = (p: string[], of: string[] | undefined) => of !== undefined && p.length <= of.length && p.every((x, i) => x === of[i]);
    const ids = [...PROFILES.map((p) => p.id), "y0", "y1", "y2"];
    for (let seed = 1; seed <= 30; seed++) {
      const rnd = mulberry32(seed);
      const { sink, g, flush } = graph();
      let checked = 0;
      for (let round = 0; round < 25; round++) {
        const before = sink.state("hv1").plain();
        for (let n = 0; n < 4; n++) {
          const r = rnd();
          const pick = () => ids[Math.floor(rnd() * ids.length)]!;
          if (r < 0.15) {
            const id = `y${Math.floor(rnd() * 3)}`;
            if (g.hasProfile(id)) g.deleteProfile(id);
            else g.upsertProfile(profile({ id, inbound_rules: [{}], outbound_rules: [{}] }));
          } else {
            const i = 1 + Math.floor(rnd() * 12);
            const len = Math.floor(rnd() * 4);
            const list = new Set<string>();
            while (list.size < len) list.add(pick());
            g.upsertEndpoint(ep(i, [...list]));
          }
        }
        flush();
        const after = sink.state("hv1").plain();
        // Sets the apply destroys keep their members until its last stage,
        // except the position sets, which the driver empties in its ipset
        // stage (EMPTIED_BEFORE_DESTROY_RE).
        const leaving = Object.fromEntries(Object.entries(before.sets).filter(([n]) => !(n in after.sets)).map(([n, v]) => [n, EMPTIED_BEFORE_DESTROY_RE.test(n) ? { ...v, members: [] } : v]));
        const hybrid = { ...after, sets: { ...leaving, ...after.sets }, chains: before.chains };
        if (Object.keys(before.chains).length === 0) continue;
        for (let i = 1; i <= 12; i++) {
          for (const dir of ["from", "to"] as const) {
            const addr = `198.18.0.${i}`;
            const h = classify(hybrid, 4, dir, addr, `tap${i}`);
            const hp = parse(h);
            if (hp === undefined) continue; // dropped: fail closed
            const ok = prefixOf(hp, parse(classify(before, 4, dir, addr, `tap${i}`))) || prefixOf(hp, parse(classify(after, 4, dir, addr, `tap${i}`)));
            if (!ok && process.env.DEBUG_MIDAPPLY) console.log(JSON.stringify({ chains: Object.fromEntries(Object.entries(before.chains).filter(([k]) => /^4:pal-c[ft]/.test(k))), sets: Object.fromEntries(Object.entries(hybrid.sets).filter(([k]) => /^pal4i/.test(k))) }, null, 1));
            expect(ok, `seed ${seed} round ${round} tap${i} ${dir}: mid-apply ${h}; before ${classify(before, 4, dir, addr, `tap${i}`)}; after ${classify(after, 4, dir, addr, `tap${i}`)}`).toBe(true);
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThan(100);
    }
  });

  it("with many profiles at a position, every endpoint reaches its own profiles in order through the trees, and nothing else does — after any history", () => {
    const rnd = mulberry32(5);
    // Position 2: 60 profiles, of which those with i % 3 === 0 do not exist (missing: a DROP there).
    const lists = Array.from({ length: 60 }, (_, i) => [PROFILES[i % 7]!.id, PROFILES[(i + 1 + (i % 5)) % 7]!.id, `x${i}`]);
    const xs = Array.from({ length: 60 }, (_, i) => i).filter((i) => i % 3 !== 0).map((i) => profile({ id: `x${i}`, inbound_rules: [{}], outbound_rules: [] }));
    const { sink, g, flush } = graph();
    for (const x of xs) g.upsertProfile(x);
    const live = new Map<number, Endpoint>();
    for (let step = 0; step < 800; step++) {
      const i = 1 + Math.floor(rnd() * 250);
      if (live.has(i) && rnd() < 0.3) {
        g.deleteEndpoint(`hv1/openstack/w${i}/e`);
        live.delete(i);
      } else {
        // Some addresses and MACs shared between interfaces (a few /16s), so MAC claims meet and disagree.
        const shared = rnd() < 0.2 ? { ipv4_nets: [`10.${1 + (i % 3)}.0.${i % 7}`], mac: `02:00:00:00:00:0${i % 2}` } : {};
        const e = ep(i, lists[Math.floor(rnd() * lists.length)]!, rnd() < 0.2 ? { state: "inactive", ...shared } : rnd() < 0.3 ? { ipv4_nets: [`198.19.${i >> 8}.${i & 255}`] } : { ...shared });
        g.upsertEndpoint(e);
        live.set(i, e);
      }
      if (rnd() < 0.2) flush();
    }
    flush();
    const st = sink.state("hv1").plain();
    expect(st).toEqual(snapshotState(g, "hv1").plain());
    // …and what a fresh graph computes from the final model alone.
    const fresh = graph();
    for (const x of xs) fresh.g.upsertProfile(x);
    for (const e of live.values()) fresh.g.upsertEndpoint(e);
    fresh.flush();
    expect(st).toEqual(fresh.sink.state("hv1").plain());
    expect(Object.keys(st.chains).some((k) => k.startsWith("4:pal-cf2-"))).toBe(true); // position 2's tree is in use
    const exists = new Set([...PROFILES, ...xs].map((p) => p.id));
    const upToMissing = (ids: readonly string[], kind: string) => {
      const out: string[] = [];
      for (const id of ids) {
        out.push(exists.has(id) ? `pal-${kind}-${id}` : "missing");
        if (!exists.has(id)) break;
      }
      return out;
    };
    for (const [i, e] of live) {
      const iface = `tap${i}`;
      const addr = e.ipv4Nets[0]!.replace(/\/32$/, "");
      if (e.state !== "active") {
        expect(classify(st, 4, "from", addr, iface)).toBe("DROP:pal-from-wl-dispatch");
        expect(classify(st, 4, "to", addr, iface)).toBe("DROP:pal-to-wl-dispatch");
        continue;
      }
      const cls = { from: classOf("from", upToMissing(e.profileIds, "po")), to: classOf("to", upToMissing(e.profileIds, "pi")) };
      // Another active endpoint here with this address and another MAC: neither passes (fail closed).
      const disputed = e.mac !== undefined && [...live.values()].some((o) => o !== e && o.state === "active" && o.mac !== undefined && o.mac !== e.mac && o.ipv4Nets[0] === e.ipv4Nets[0]);
      expect(classify(st, 4, "from", addr, iface, e.mac)).toBe(disputed ? "DROP:pal-from-wl-mac" : cls.from);
      if (e.mac !== undefined && !disputed) expect(classify(st, 4, "from", addr, iface, "02:99:99:99:99:99")).toBe("DROP:pal-from-wl-mac");
      expect(classify(st, 4, "to", addr, iface)).toBe(cls.to);
      // The mirrored re-check finds the same profiles.
      expect(classify(st, 4, "to", addr, iface, undefined, { reply: true })).toBe(classOf("to", upToMissing(e.profileIds, "qo"), { reply: true }));
      // Inbound is keyed by the destination too: another address on that interface has no endpoint.
      expect(classify(st, 4, "to", "203.0.113.1", iface)).toBe("DROP:pal-to-wl-dispatch");
      expect(classify(st, 6, "from", `2001:db8::${i.toString(16)}`, iface, e.mac)).toBe(cls.from);
      // Anti-spoofing: another source on the same interface (reported as such by the driver, which knows the interface).
      expect(classify(st, 4, "from", "203.0.113.1", iface)).toBe("DROP:pal-from-wl-dispatch");
    }
    // An interface without an endpoint.
    expect(classify(st, 4, "from", "198.18.0.1", "tap999")).toBe("DROP:pal-from-wl-dispatch");
    expect(classify(st, 4, "to", "198.18.0.1", "tap999")).toBe("DROP:pal-to-wl-dispatch");
  });
});
