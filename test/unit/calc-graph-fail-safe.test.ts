// Fail-safe rendering (DESIGN §2.2): missing profiles, inactive endpoints,
// endpoints without profiles and interface-name conflicts all DROP.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { MARK, endpoint, jumps, keyOf, profile } from "../support/model.js";
import { CHAINS_LAYOUT } from "../support/layouts.js";

function graph() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink, CHAINS_LAYOUT);
  let rev = 0;
  const flush = () => g.flush(++rev);
  return { sink, g, flush, st: () => sink.state("hv1") };
}

const allowAll = (id: string) => profile({ id, inbound_rules: [{}], outbound_rules: [{}] });
const ep = (extra: Record<string, unknown>) =>
  endpoint({ host: "hv1", workload: "w", id: "e1", name: "tap1", ipv4_nets: ["198.18.0.1"], ...extra });

describe("calc graph: fail-safe rendering", () => {
  it("a missing profile renders -j DROP in place of its jump; the jump appears once the profile exists", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep({ profile_ids: ["ghost"] }));
    flush();
    for (const f of [4, 6] as const) expect(st().chain(f, "pal-tw-tap1")).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-fw-tap1")).toEqual(["! -s 198.18.0.1 -j DROP", MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-pi-ghost")).toBeUndefined();

    g.upsertProfile(allowAll("ghost"));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual(jumps("pi", ["ghost"]));
    expect(st().chain(4, "pal-fw-tap1")).toEqual(["! -s 198.18.0.1 -j DROP", ...jumps("po", ["ghost"])]);
    expect(st().chain(4, "pal-pi-ghost")).toEqual([MARK.set, MARK.returnIfSet]);

    // and goes again (with the profile's chains) when the profile is deleted
    g.deleteProfile("ghost");
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-pi-ghost")).toBeUndefined();
    expect(st().chain(6, "pal-po-ghost")).toBeUndefined();
    expect(sink.violations()).toEqual([]);
  });

  it("a missing profile in the middle: profiles before it still apply, those after it never do", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertProfile(allowAll("c"));
    g.upsertEndpoint(ep({ profile_ids: ["a", "b", "c"] }));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual([MARK.clear, "-j pal-pi-a", MARK.returnIfSet, "-j DROP"]);
    g.upsertProfile(allowAll("b"));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual(jumps("pi", ["a", "b", "c"]));
  });

  it("an inactive endpoint's chains are just -j DROP, whatever its profiles", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"], state: "inactive", mac: "02:00:00:00:00:01" }));
    flush();
    for (const f of [4, 6] as const) {
      expect(st().chain(f, "pal-tw-tap1")).toEqual(["-j DROP"]);
      expect(st().chain(f, "pal-fw-tap1")).toEqual(["-j DROP"]);
    }
    // still dispatched to (so it is dropped, not sent on to other rules)
    expect(st().chain(4, "pal-from-wl-dispatch")).toEqual(["-i tap1 -g pal-fw-tap1", "-j DROP"]);
    g.upsertEndpoint(ep({ profile_ids: ["a"], state: "active" }));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual(jumps("pi", ["a"]));
  });

  it("an endpoint with no profiles ends in DROP in both directions", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep({ profile_ids: [] }));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-fw-tap1")).toEqual(["! -s 198.18.0.1 -j DROP", MARK.clear, "-j DROP"]);
    expect(st().chain(6, "pal-tw-tap1")).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(6, "pal-fw-tap1")).toEqual(["-j DROP"]);
  });

  it("anti-spoofing: several addresses are all allowed, anything else is dropped before the profiles", () => {
    const { g, flush, st } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"], ipv4_nets: ["198.18.0.1", "198.18.0.2"], mac: "02:00:00:00:00:0a" }));
    flush();
    expect(st().chain(4, "pal-fw-tap1")).toEqual([
      "-m mac ! --mac-source 02:00:00:00:00:0a -j DROP",
      MARK.clear,
      `-s 198.18.0.1 ${MARK.set}`,
      `-s 198.18.0.2 ${MARK.set}`,
      "-m mark ! --mark 0x1000000/0x1000000 -j DROP",
      ...jumps("po", ["a"]),
    ]);
  });

  it("two endpoints with the same interface name on one host both render DROP chains until resolved", () => {
    const { g, flush, st, sink } = graph();
    g.upsertProfile(allowAll("a"));
    const one = ep({ id: "one", profile_ids: ["a"] });
    const two = ep({ id: "two", profile_ids: ["a"], ipv4_nets: ["198.18.0.2"] });
    g.upsertEndpoint(one);
    g.upsertEndpoint(two);
    flush();
    for (const f of [4, 6] as const) {
      expect(st().chain(f, "pal-tw-tap1")).toEqual(["-j DROP"]);
      expect(st().chain(f, "pal-fw-tap1")).toEqual(["-j DROP"]);
    }
    expect(st().chain(4, "pal-from-wl-dispatch")).toEqual(["-i tap1 -g pal-fw-tap1", "-j DROP"]);
    expect([...st().endpoints.keys()].sort()).toEqual([keyOf(one), keyOf(two)].sort());

    // resolving the conflict renders the survivor
    g.deleteEndpoint(keyOf(one));
    flush();
    expect(st().chain(4, "pal-fw-tap1")).toEqual(["! -s 198.18.0.2 -j DROP", ...jumps("po", ["a"])]);

    // renaming instead of deleting resolves it too
    g.upsertEndpoint(one);
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toEqual(["-j DROP"]);
    g.upsertEndpoint({ ...one, name: "tap2" });
    flush();
    expect(st().chain(4, "pal-fw-tap1")).toEqual(["! -s 198.18.0.2 -j DROP", ...jumps("po", ["a"])]);
    expect(st().chain(4, "pal-fw-tap2")).toEqual(["! -s 198.18.0.1 -j DROP", ...jumps("po", ["a"])]);
    expect(st().chain(4, "pal-from-wl-dispatch")).toEqual(["-i tap1 -g pal-fw-tap1", "-i tap2 -g pal-fw-tap2", "-j DROP"]);
    expect(sink.violations()).toEqual([]);
  });

  it("the same interface name on two different hosts is not a conflict", () => {
    const { g, flush, sink } = graph();
    g.upsertProfile(allowAll("a"));
    g.upsertEndpoint(ep({ profile_ids: ["a"] }));
    g.upsertEndpoint(ep({ host: "hv2", profile_ids: ["a"], ipv4_nets: ["198.18.0.2"] }));
    flush();
    expect(sink.state("hv1").chain(4, "pal-tw-tap1")).toEqual(jumps("pi", ["a"]));
    expect(sink.state("hv2").chain(4, "pal-tw-tap1")).toEqual(jumps("pi", ["a"]));
  });

  it("renaming an endpoint removes the old interface's chains and dispatch entries", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep({ profile_ids: [] }));
    flush();
    g.upsertEndpoint(ep({ profile_ids: [], name: "tapnew" }));
    flush();
    expect(st().chain(4, "pal-tw-tap1")).toBeUndefined();
    expect(st().chain(6, "pal-fw-tap1")).toBeUndefined();
    expect(st().chain(4, "pal-tw-tapnew")).toEqual([MARK.clear, "-j DROP"]);
    expect(st().chain(4, "pal-to-wl-dispatch")).toEqual(["-o tapnew -g pal-tw-tapnew", "-j DROP"]);
    expect(st().endpoints.get(keyOf(ep({})))).toBe("tapnew");
    expect(st().plain()).toEqual(snapshotState(g, "hv1").plain());
    expect(sink.violations()).toEqual([]);
  });
});
