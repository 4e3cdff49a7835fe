// Fail-safe rendering (DESIGN §2.2): missing profiles, inactive endpoints,
// endpoints without profiles and interface-name conflicts all DROP.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { classOf, classify } from "../support/classify.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { MARK, endpoint, keyOf, profile } from "../support/model.js";

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
/**
 * What classify says of an ordered profile list (DESIGN §6.5): the profile
 * chains its positions lead to, "missing" where a profile does not exist
 * (the packet is dropped there; nothing after it is looked at).
 */
const chainsOf = (kind: string, ids: string[]) => ids.map((id) => (id === "missing" ? "missing" : `pal-${kind}-${id}`));
const to = (ids: string[]) => classOf("to", chainsOf("pi", ids));
const from = (ids: string[]) => classOf("from", chainsOf("po", ids));
/** The mirrored re-check (DESIGN §6.5): a reply reaching the endpoint, its outbound rules mirrored; leaving it, its inbound rules. */
const rto = (ids: string[]) => classOf("to", chainsOf("qo", ids), { reply: true });
const rfrom = (ids: string[]) => classOf("from", chainsOf("qi", ids), { reply: true });
const seen = (st: ReturnType<RecordingSink["state"]>, dir: "from" | "to", reply = false) => classify(st.plain(), 4, dir, "198.18.0.1", "tap1", undefined, { reply });

describe("calc graph: fail-safe rendering", () => {
  it("a missing profile is a DROP at its position; its users go to the profile once it exists, and back to the DROP when it is deleted", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep({ profile_ids: ["ghost"] }));
    flush();
    expect(seen(st(), "to")).toBe(to(["missing"]));
    expect(seen(st(), "from")).toBe(from(["missing"]));
    // The re-check of a reply fails closed too.
    expect(seen(st(), "to", true)).toBe(rto(["missing"]));
    expect(seen(st(), "from", true)).toBe(rfrom(["missing"]));
    for (const f of [4, 6] as const) {
      expect(st().chain(f, "pal-ct0")).toEqual([`-m set --match-set pal${f}ix0 dst,dst -j DROP`, "-j DROP"]);
      expect(st().chain(f, "pal-rf0")).toEqual([`-m set --match-set pal${f}ix0 src,src -j DROP`, "-j DROP"]);
      expect(st().chain(f, "pal-ct")).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rt", MARK.clear, "-j pal-ct0", MARK.returnIfSet, "-j DROP"]);
      expect(st().chain(f, "pal-cf")).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rf", "-j pal-from-wl-mac", MARK.clear, "-j pal-cf0", MARK.returnIfSet, "-j DROP"]);
    }
    expect(st().plain().sets["pal4ix0"]!.members).toEqual(["198.18.0.1,tap1"]);
    expect(st().chain(4, "pal-pi-ghost")).toBeUndefined();
    expect(st().chain(4, "pal-qi-ghost")).toBeUndefined();

    g.upsertProfile(allowAll("ghost"));
    flush();
    expect(seen(st(), "to")).toBe(to(["ghost"]));
    expect(seen(st(), "from")).toBe(from(["ghost"]));
    expect(st().chain(4, "pal-pi-ghost")).toEqual([MARK.set, MARK.returnIfSet]);
    // A reply reaching the endpoint: its outbound rules, mirrored; leaving it: its inbound rules, mirrored.
    expect(seen(st(), "to", true)).toBe(rto(["ghost"]));
    expect(seen(st(), "from", true)).toBe(rfrom(["ghost"]));
    expect(st().chain(4, "pal-qi-ghost")).toEqual([MARK.set, MARK.returnIfSet]);
    expect(st().chain(6, "pal-qo-ghost")).toEqual([MARK.set, MARK.returnIfSet]);
    // Its members moved out of the missing set, which went with its line.
    expect(st().plain().sets["pal4ix0"]).toBeUndefined();
    expect(st().chain(4, "pal-ct0")!.some((r) => r.includes("ix0"))).toBe(false);

    // and goes again (with the profile's chains) when the profile is deleted
    g.deleteProfile("ghost");
    flush();
    expect(seen(st(), "to")).toBe(to(["missing"]));
    expect(seen(st(), "to", true)).toBe(rto(["missing"]));
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
    expect(seen(st(), "to")).toBe(to(["a", "missing"]));
    expect(seen(st(), "from", true)).toBe(rfrom(["a", "missing"]));
    g.upsertProfile(allowAll("b"));
    flush();
    expect(seen(st(), "to")).toBe(to(["a", "b", "c"]));
    expect(seen(st(), "from", true)).toBe(rfrom(["a", "b", "c"]));
    expect(st().chain(4, "pal-ct")).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rt", MARK.clear, ...[0, 1, 2].flatMap((k) => [`-j pal-ct${k}`, MARK.returnIfSet]), "-j DROP"]);
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
    // no active endpoint lists a profile on the host: no position chains at all
    expect(st().chain(4, "pal-ct0")).toBeUndefined();
    g.upsertEndpoint(ep({ profile_ids: ["a"], state: "active", mac: "02:00:00:00:00:01", ipv6_nets: ["2001:db8::1"] }));
    flush();
    expect(classify(st().plain(), 4, "to", "198.18.0.1", "tap1")).toBe(to(["a"]));
    expect(st().plain().sets["pal4i-inactive"]!.members).toEqual([]);
  });

  it("an endpoint with no profiles ends in DROP in both directions", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep({ profile_ids: [] }));
    flush();
    for (const f of [4, 6] as const) {
      expect(st().chain(f, "pal-ct")).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rt", MARK.clear, "-j DROP"]);
      expect(st().chain(f, "pal-rt")).toEqual([MARK.clear, "-j DROP"]);
    }
    expect(seen(st(), "to")).toBe(to([]));
    expect(seen(st(), "from", true)).toBe(rfrom([]));
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
    expect(plain.sets["pal4i-active"]!.members).toEqual(["198.18.0.1,tapnew"]);
    expect(plain.sets["pal4i-nomac"]!.members).toEqual(["198.18.0.1,tapnew"]);
    expect(classify(plain, 4, "to", "198.18.0.1", "tap1")).toBe("DROP:pal-to-wl-dispatch");
    expect(classify(plain, 4, "to", "198.18.0.1", "tapnew")).toBe(to([]));
    expect(st().endpoints.get(keyOf(ep({})))).toBe("tapnew");
    expect(plain).toEqual(snapshotState(g, "hv1").plain());
    expect(sink.violations()).toEqual([]);
  });
});
