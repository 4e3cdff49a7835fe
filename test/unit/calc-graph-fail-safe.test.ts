// Fail-safe rendering (DESIGN §2.2): missing profiles, inactive endpoints,
// endpoints without profiles and interface-name conflicts all DROP.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { classKey, fromClassChain, replyFromClassChain, replyToClassChain, toClassChain } from "../../services/calc/names.js";
import { classify } from "../support/classify.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { MARK, divert, endpoint, jumps, keyOf, profile } from "../support/model.js";

function graph() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink);
  let rev = 0;
  const flush = () => g.flush(++rev);
  return { sink, g, flush, st: () => sink.state("hv1") };
}

const allowAll = (id: string) => profile({ id, inbound_rules: [{}], outbound_rules: [{}] });
const ep = (extra: Record<string, unknown>) =>
  endpoint({ host: "hv1", workload: "w", id: "e1", name: "tap1", ipv4_nets: ["198.18.0.1"], ...extra });
/** The class chains of an ordered profile list: inbound, and outbound after the MAC check. */
const to = (ids: string[]) => toClassChain(classKey(ids));
const from = (ids: string[]) => fromClassChain(classKey(ids));
const MAC_CHECK = "-j pal-from-wl-mac";
/** The mirrored class chains (DESIGN §6.5): a reply leaving the endpoint, a reply reaching it. */
const rfrom = (ids: string[]) => replyFromClassChain(classKey(ids));
const rto = (ids: string[]) => replyToClassChain(classKey(ids));
/** The re-check divert each class chain starts with. */
const DIV_TO = (ids: string[]) => divert(rto(ids));
const DIV_FROM = (ids: string[]) => divert(rfrom(ids));

describe("calc graph: fail-safe rendering", () => {
  it("a missing profile renders -j DROP in place of its jump; the jump appears once the profile exists", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep({ profile_ids: ["ghost"] }));
    flush();
    for (const f of [4, 6] as const) {
      expect(st().chain(f, to(["ghost"]))).toEqual([DIV_TO(["ghost"]), MARK.clear, "-j DROP"]);
      expect(st().chain(f, from(["ghost"]))).toEqual([DIV_FROM(["ghost"]), MAC_CHECK, MARK.clear, "-j DROP"]);
      // The re-check of a reply fails closed too.
      expect(st().chain(f, rto(["ghost"]))).toEqual([MARK.clear, "-j DROP"]);
      expect(st().chain(f, rfrom(["ghost"]))).toEqual([MARK.clear, "-j DROP"]);
    }
    expect(st().chain(4, "pal-pi-ghost")).toBeUndefined();
    expect(st().chain(4, "pal-qi-ghost")).toBeUndefined();

    g.upsertProfile(allowAll("ghost"));
    flush();
    expect(st().chain(4, to(["ghost"]))).toEqual([DIV_TO(["ghost"]), ...jumps("pi", ["ghost"])]);
    expect(st().chain(4, from(["ghost"]))).toEqual([DIV_FROM(["ghost"]), MAC_CHECK, ...jumps("po", ["ghost"])]);
    expect(st().chain(4, "pal-pi-ghost")).toEqual([MARK.set, MARK.returnIfSet]);
    // A reply reaching the endpoint: its outbound rules, mirrored; leaving it: its inbound rules, mirrored.
    expect(st().chain(4, rto(["ghost"]))).toEqual(jumps("qo", ["ghost"]));
    expect(st().chain(4, rfrom(["ghost"]))).toEqual(jumps("qi", ["ghost"]));
    expect(st().chain(4, "pal-qi-ghost")).toEqual([MARK.set, MARK.returnIfSet]);
    expect(st().chain(6, "pal-qo-ghost")).toEqual([MARK.set, MARK.returnIfSet]);

    // and goes again (with the profile's chains) when the profile is deleted
    g.deleteProfile("ghost");
    flush();
    expect(st().chain(4, to(["ghost"]))).toEqual([DIV_TO(["ghost"]), MARK.clear, "-j DROP"]);
    expect(st().chain(4, rto(["ghost"]))).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-pi-ghost")).toBeUndefined();
    expect(st().chain(6, "pal-po-ghost")).toBeUndefined();
    expect(st().chain(4, "pal-qi-ghost")).toBeUndefined();
    expect(st().chain(6, "pal-qo-ghost")).toBeUndefined();
    expect(sink.violations()).toEqual([]);
  });

  it("a missing profile in the middle: profiles before it still apply, those after it never do", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertProfile(allowAll("c"));
    g.upsertEndpoint(ep({ profile_ids: ["a", "b", "c"] }));
    flush();
    expect(st().chain(4, to(["a", "b", "c"]))).toEqual([DIV_TO(["a", "b", "c"]), MARK.clear, "-j pal-pi-a", MARK.returnIfSet, "-j DROP"]);
    expect(st().chain(4, rfrom(["a", "b", "c"]))).toEqual([MARK.clear, "-j pal-qi-a", MARK.returnIfSet, "-j DROP"]);
    g.upsertProfile(allowAll("b"));
    flush();
    expect(st().chain(4, to(["a", "b", "c"]))).toEqual([DIV_TO(["a", "b", "c"]), ...jumps("pi", ["a", "b", "c"])]);
    expect(st().chain(4, rfrom(["a", "b", "c"]))).toEqual(jumps("qi", ["a", "b", "c"]));
  });

  it("an inactive endpoint is dropped in both directions, whatever its profiles", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"], state: "inactive", mac: "02:00:00:00:00:01", ipv6_nets: ["2001:db8::1"] }));
    flush();
    const plain = st().plain();
    expect(plain.sets["pal4i-inactive"]!.members).toEqual(["198.18.0.1,tap1"]);
    expect(plain.sets["pal6i-inactive"]!.members).toEqual(["2001:db8::1,tap1"]);
    expect(classify(plain, 4, "from", "198.18.0.1", "tap1", "02:00:00:00:00:01")).toBe("DROP:pal-from-wl-dispatch");
    expect(classify(plain, 4, "to", "198.18.0.1", "tap1")).toBe("DROP:pal-to-wl-dispatch");
    expect(classify(plain, 6, "from", "2001:db8::1", "tap1", "02:00:00:00:00:01")).toBe("DROP:pal-from-wl-dispatch");
    // its class is not in use on the host: no class chains at all
    expect(st().chain(4, to(["a"]))).toBeUndefined();
    g.upsertEndpoint(ep({ profile_ids: ["a"], state: "active", mac: "02:00:00:00:00:01", ipv6_nets: ["2001:db8::1"] }));
    flush();
    expect(st().chain(4, to(["a"]))).toEqual([DIV_TO(["a"]), ...jumps("pi", ["a"])]);
    expect(classify(st().plain(), 4, "to", "198.18.0.1", "tap1")).toBe(to(["a"]));
    expect(st().plain().sets["pal4i-inactive"]!.members).toEqual([]);
  });

  it("an endpoint with no profiles ends in DROP in both directions", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep({ profile_ids: [] }));
    flush();
    for (const f of [4, 6] as const) {
      expect(st().chain(f, to([]))).toEqual([DIV_TO([]), MARK.clear, "-j DROP"]);
      expect(st().chain(f, from([]))).toEqual([DIV_FROM([]), MAC_CHECK, MARK.clear, "-j DROP"]);
      expect(st().chain(f, rto([]))).toEqual([MARK.clear, "-j DROP"]);
      expect(st().chain(f, rfrom([]))).toEqual([MARK.clear, "-j DROP"]);
    }
    expect(classify(st().plain(), 4, "from", "198.18.0.1", "tap1")).toBe(from([]));
    // No IPv6 address: nothing from it is classified in IPv6.
    expect(classify(st().plain(), 6, "from", "2001:db8::1", "tap1")).toBe("DROP:pal-from-wl-dispatch");
  });

  it("anti-spoofing: several addresses are all allowed, anything else is dropped before the profiles", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"], ipv4_nets: ["198.18.0.1", "198.18.0.2"], mac: "02:00:00:00:00:0a" }));
    flush();
    const plain = st().plain();
    for (const a of ["198.18.0.1", "198.18.0.2"]) {
      expect(classify(plain, 4, "from", a, "tap1", "02:00:00:00:00:0a")).toBe(from(["a"]));
      expect(classify(plain, 4, "from", a, "tap1", "02:00:00:00:00:0b")).toBe("DROP:pal-from-wl-mac");
    }
    expect(classify(plain, 4, "from", "198.18.0.3", "tap1", "02:00:00:00:00:0a")).toBe("DROP:pal-from-wl-dispatch");
  });

  it("two endpoints with the same interface name on one host are both dropped until resolved", () => {
    const { g, flush, st, sink } = graph();
    g.upsertProfile(allowAll("a"));
    const one = ep({ id: "one", profile_ids: ["a"] });
    const two = ep({ id: "two", profile_ids: ["a"], ipv4_nets: ["198.18.0.2"] });
    g.upsertEndpoint(one);
    g.upsertEndpoint(two);
    flush();
    for (const a of ["198.18.0.1", "198.18.0.2"]) {
      expect(classify(st().plain(), 4, "from", a, "tap1")).toBe("DROP:pal-from-wl-dispatch");
      expect(classify(st().plain(), 4, "to", a, "tap1")).toBe("DROP:pal-to-wl-dispatch");
    }
    expect([...st().endpoints.keys()].sort()).toEqual([keyOf(one), keyOf(two)].sort());

    // resolving the conflict classifies the survivor
    g.deleteEndpoint(keyOf(one));
    flush();
    expect(classify(st().plain(), 4, "from", "198.18.0.2", "tap1")).toBe(from(["a"]));
    expect(classify(st().plain(), 4, "from", "198.18.0.1", "tap1")).toBe("DROP:pal-from-wl-dispatch");

    // renaming instead of deleting resolves it too
    g.upsertEndpoint(one);
    flush();
    expect(classify(st().plain(), 4, "to", "198.18.0.2", "tap1")).toBe("DROP:pal-to-wl-dispatch");
    g.upsertEndpoint({ ...one, name: "tap2" });
    flush();
    expect(classify(st().plain(), 4, "from", "198.18.0.2", "tap1")).toBe(from(["a"]));
    expect(classify(st().plain(), 4, "from", "198.18.0.1", "tap2")).toBe(from(["a"]));
    expect(classify(st().plain(), 4, "from", "198.18.0.1", "tap1")).toBe("DROP:pal-from-wl-dispatch");
    expect(sink.violations()).toEqual([]);
  });

  it("the same interface name on two different hosts is not a conflict", () => {
    const { g, flush, sink } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"] }));
    g.upsertEndpoint(ep({ host: "hv2", profile_ids: ["a"], ipv4_nets: ["198.18.0.2"] }));
    flush();
    expect(classify(sink.state("hv1").plain(), 4, "to", "198.18.0.1", "tap1")).toBe(to(["a"]));
    expect(classify(sink.state("hv2").plain(), 4, "to", "198.18.0.2", "tap1")).toBe(to(["a"]));
  });

  it("renaming an endpoint removes the old interface's members", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep({ profile_ids: [] }));
    flush();
    g.upsertEndpoint(ep({ profile_ids: [], name: "tapnew" }));
    flush();
    const plain = st().plain();
    expect(plain.sets[`pal4ic_${classKey([])}`]!.members).toEqual(["198.18.0.1,tapnew"]);
    expect(plain.sets["pal4i-nomac"]!.members).toEqual(["198.18.0.1,tapnew"]);
    expect(classify(plain, 4, "to", "198.18.0.1", "tap1")).toBe("DROP:pal-to-wl-dispatch");
    expect(classify(plain, 4, "to", "198.18.0.1", "tapnew")).toBe(to([]));
    expect(st().endpoints.get(keyOf(ep({})))).toBe("tapnew");
    expect(plain).toEqual(snapshotState(g, "hv1").plain());
    expect(sink.violations()).toEqual([]);
  });
});
