// The order contract inside one flush (DESIGN §5.7): new/changed ipsets before
// the chains that use them; chain removals before the ipsets they referenced
// are removed.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import type { HostUpdate } from "../../services/calc/desired-state.js";
import { RecordingSink } from "../support/host-state.js";
import { endpoint, profile } from "../support/model.js";
import { positionChain, positionSet, profileKey } from "../../services/calc/names.js";

const idx = (us: HostUpdate[], pred: (u: HostUpdate) => boolean) => {
  const i = us.findIndex(pred);
  expect(i, "update not found").toBeGreaterThanOrEqual(0);
  return i;
};
const isSetUp = (name: string) => (u: HostUpdate) => u.type === "ipset-update" && u.name === name;
const isSetRm = (name: string) => (u: HostUpdate) => u.type === "ipset-remove" && u.name === name;
const isChainUp = (family: 4 | 6, name: string) => (u: HostUpdate) => u.type === "chain-update" && u.chain.family === family && u.chain.name === name;
const isChainRm = (family: 4 | 6, name: string) => (u: HostUpdate) => u.type === "chain-remove" && u.family === family && u.name === name;

function setup() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink);
  g.upsertProfile(profile({ id: "peer", tags: ["t"] }));
  g.upsertEndpoint(endpoint({ host: "hv2", workload: "w", id: "peer", name: "tap9", profile_ids: ["peer"], ipv4_nets: ["198.18.9.9"], ipv6_nets: ["2001:db8::99"] }));
  g.upsertEndpoint(endpoint({ host: "hv1", workload: "w", id: "e", name: "tap1", profile_ids: ["x"], ipv4_nets: ["198.18.0.1"] }));
  g.flush(1);
  let mark = sink.calls.length;
  const lastBatch = (host: string) => {
    const calls = sink.callsSince(mark).filter((c) => c.host === host);
    mark = sink.calls.length;
    expect(calls).toHaveLength(1);
    return calls[0]!.updates;
  };
  return { sink, g, lastBatch };
}

/** hv1's endpoint's first position (inbound): the chain that goes to profile x. */
const X_IN = positionChain("to", 0);
const x = profile({ id: "x", inbound_rules: [{ src_tag: "t" }], outbound_rules: [{}] });

describe("calc graph: order contract within one flush", () => {
  it("creating a profile that references a new tag: the set comes before the chains using it", () => {
    const { g, lastBatch, sink } = setup();
    g.upsertProfile(x);
    g.flush(2);
    const us = lastBatch("hv1");
    for (const f of [4, 6] as const) {
      const set = idx(us, isSetUp(`pal${f}t-t`));
      expect(set).toBeLessThan(idx(us, isChainUp(f, "pal-pi-x")));
      expect(set).toBeLessThan(idx(us, isChainUp(f, X_IN)));
    }
    // the set arrives with its members, not empty
    const v4 = us.find(isSetUp("pal4t-t")) as Extract<HostUpdate, { type: "ipset-update" }>;
    expect(v4.members).toEqual(["198.18.9.9"]);
    expect(sink.violations()).toEqual([]);
  });

  it("deleting that profile: the position chain stops going to it first, then the profile chains go, then the sets", () => {
    const { g, lastBatch, sink } = setup();
    g.upsertProfile(x);
    g.flush(2);
    lastBatch("hv1");
    g.deleteProfile("x");
    g.flush(3);
    const us = lastBatch("hv1");
    for (const f of [4, 6] as const) {
      const tw = idx(us, isChainUp(f, X_IN));
      const rmChain = idx(us, isChainRm(f, "pal-pi-x"));
      const rmSet = idx(us, isSetRm(`pal${f}t-t`));
      expect(tw).toBeLessThan(rmChain);
      expect(rmChain).toBeLessThan(rmSet);
    }
    expect(sink.violations()).toEqual([]);
  });

  it("a rule change swapping one tag for another: new set first, old set after the chain stops using it", () => {
    const { g, lastBatch, sink } = setup();
    g.upsertProfile(x);
    g.flush(2);
    lastBatch("hv1");
    g.upsertProfile(profile({ id: "x", inbound_rules: [{ src_tag: "u" }], outbound_rules: [{}] }));
    g.flush(3);
    const us = lastBatch("hv1");
    for (const f of [4, 6] as const) {
      const chain = idx(us, isChainUp(f, "pal-pi-x"));
      expect(idx(us, isSetUp(`pal${f}t-u`))).toBeLessThan(chain);
      expect(chain).toBeLessThan(idx(us, isSetRm(`pal${f}t-t`)));
    }
    expect(sink.violations()).toEqual([]);
  });

  it("removing the last endpoint using a profile: its chains are removed before its sets", () => {
    const { g, lastBatch, sink } = setup();
    g.upsertProfile(x);
    g.flush(2);
    lastBatch("hv1");
    g.deleteEndpoint("hv1/openstack/w/e");
    g.flush(3);
    const us = lastBatch("hv1");
    for (const f of [4, 6] as const) {
      expect(idx(us, isChainRm(f, "pal-pi-x"))).toBeLessThan(idx(us, isSetRm(`pal${f}t-t`)));
      // the workload chain no longer calls the position before its chains are removed, and its set goes after both
      expect(idx(us, isChainUp(f, "pal-ct"))).toBeLessThan(idx(us, isChainRm(f, X_IN)));
      expect(idx(us, isChainRm(f, X_IN))).toBeLessThan(idx(us, isSetRm(positionSet(0, profileKey("x"), f))));
    }
    expect(sink.violations()).toEqual([]);
  });

  it("membership changes of a set a host already has arrive as deltas, not rewrites", () => {
    const { g, lastBatch } = setup();
    g.upsertProfile(x);
    g.flush(2);
    lastBatch("hv1");
    g.upsertEndpoint(endpoint({ host: "hv3", workload: "w", id: "p2", name: "tap8", profile_ids: ["peer"], ipv4_nets: ["198.18.8.8"] }));
    g.flush(3);
    expect(lastBatch("hv1")).toEqual([{ type: "ipset-delta", name: "pal4t-t", family: 4, added: ["198.18.8.8"], removed: [] }]);
  });
});
