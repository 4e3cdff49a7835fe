// Subscriptions and the read-only snapshot (DESIGN §7.4): hosts subscribe
// and unsubscribe explicitly; snapshot() is a query — it never flushes,
// never emits, and changes nothing; only flush() (driven by the model feed)
// produces output.
import { describe, expect, it } from "vitest";
import { CalcGraph, DEFAULT_CALC_CONFIG, type HostUpdate } from "../../services/calc/index.js";
import type { Endpoint } from "../../services/model/index.js";

const ep = (host: string, i: number): Endpoint => ({
  host, orchestrator: "o", workload: `w${i}`, id: "e", name: `tap${i}`, state: "active", ipv4Nets: [`198.18.0.${i}/32`], ipv6Nets: [], profileIds: ["p"], labels: {},
});

function recording() {
  const calls: { host: string; updates: HostUpdate[] }[] = [];
  return { calls, sink: { onHostUpdates: (host: string, _r: number, updates: HostUpdate[]) => { calls.push({ host, updates }); } } };
}

describe("CalcGraph subscriptions and snapshots", () => {
  it("snapshot() emits nothing and creates nothing, for a known or an unknown host", () => {
    const r = recording();
    const g = new CalcGraph(r.sink, DEFAULT_CALC_CONFIG, { listen: "subscribed" });
    g.upsertProfile({ id: "p", tags: ["t"], inboundRules: [], outboundRules: [], labels: {} });
    g.upsertEndpoint(ep("hv1", 1));
    g.flush(1);
    const before = r.calls.length;
    const ghost = g.snapshot("ghost");
    expect(g.hostNames()).not.toContain("ghost");
    expect(ghost.updates.some((u) => u.type === "chain-update" && u.chain.name === "pal-from-wl-dispatch")).toBe(true);
    const a = g.snapshot("hv1");
    const b = g.snapshot("hv1");
    expect(b).toEqual(a);
    expect(r.calls.length).toBe(before);
  });

  it("refuses a snapshot inside an unflushed batch", () => {
    const g = new CalcGraph(recording().sink);
    g.upsertEndpoint(ep("hv1", 1));
    expect(() => g.snapshot("hv1")).toThrow(/unflushed batch/);
    g.flush(1);
    expect(() => g.snapshot("hv1")).not.toThrow();
  });

  it("only subscribed hosts get output; subscribing emits nothing; the snapshot of a new subscriber equals a fresh view's", () => {
    const r = recording();
    const g = new CalcGraph(r.sink, DEFAULT_CALC_CONFIG, { listen: "subscribed" });
    const fresh = g.snapshot("hv2");
    g.subscribe("hv2");
    expect(r.calls).toEqual([]);
    expect(g.snapshot("hv2")).toEqual(fresh);
    g.upsertProfile({ id: "p", tags: ["t"], inboundRules: [], outboundRules: [], labels: {} });
    g.upsertEndpoint(ep("hv1", 1));
    g.upsertEndpoint(ep("hv2", 2));
    g.flush(2);
    expect(new Set(r.calls.map((c) => c.host))).toEqual(new Set(["hv2"]));
  });

  it("unsubscribe frees an idle view with no endpoints, keeps one with endpoints; a later snapshot is the same as before", () => {
    const g = new CalcGraph(recording().sink, DEFAULT_CALC_CONFIG, { listen: "subscribed" });
    g.subscribe("ghost");
    const first = g.snapshot("ghost");
    expect(g.hostNames()).toContain("ghost");
    expect(g.unsubscribe("ghost")).toBe(true);
    expect(g.hostNames()).not.toContain("ghost");
    expect(g.snapshot("ghost").updates).toEqual(first.updates);

    g.upsertEndpoint(ep("hv1", 1));
    g.flush(1);
    g.subscribe("hv1");
    expect(g.unsubscribe("hv1")).toBe(false);
    expect(g.hostNames()).toContain("hv1");
  });
});
