// The set-based layout (DESIGN §6.5) in the calculation core: what an
// endpoint change emits, that the rule count does not follow the number of
// endpoints, and — with a small classifier over the rendered state — that
// every endpoint's packets reach its own class chain and nothing else does,
// also through the class tree once a host has more classes than a node lists.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { classKey, fromClassChain, toClassChain } from "../../services/calc/names.js";
import type { Endpoint } from "../../services/model/index.js";
import { RecordingSink, snapshotState, type PlainHostState } from "../support/host-state.js";
import { SETS_LAYOUT } from "../support/layouts.js";
import { endpoint, profile } from "../support/model.js";
import { mulberry32 } from "../support/prng.js";

const PROFILES = ["a", "b", "c", "d", "e", "f", "g"].map((id) => profile({ id, tags: [id], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
const ep = (i: number, ids: string[], extra: Record<string, unknown> = {}) =>
  endpoint({ host: "hv1", workload: `w${i}`, id: "e", name: `tap${i}`, profile_ids: ids, ipv4_nets: [`198.18.${i >> 8}.${i & 255}`], ipv6_nets: [`2001:db8::${i.toString(16)}`], ...extra });

function graph() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink, SETS_LAYOUT);
  for (const p of PROFILES) g.upsertProfile(p);
  let rev = 0;
  return { sink, g, flush: () => g.flush(++rev) };
}

const kinds = (sink: RecordingSink, since: number) => sink.callsSince(since).flatMap((c) => c.updates.map((u) => u.type)).sort();

/**
 * Follows a packet through the rendered entry chains as the kernel would:
 * set matches on (address, interface), goto, DROP. Returns the chain the
 * packet is handed to, or "DROP:<code>" with the report code (from the rule
 * just before the DROP, if any).
 */
function classify(st: PlainHostState, family: 4 | 6, dir: "from" | "to", addr: string, iface: string, mac?: string, start?: string): string {
  let chain = start ?? (dir === "from" ? "pal-from-wl-dispatch" : "pal-to-wl-dispatch");
  const inSet = (name: string) => {
    const members = st.sets[name]?.members ?? [];
    return members.includes(`${addr},${iface}`);
  };
  for (let hops = 0; hops < 20; hops++) {
    const rules = st.chains[`${family}:${chain}`];
    if (!rules) throw new Error(`no chain ${chain}`);
    let next: string | undefined;
    for (const r of rules) {
      const set = /-m set --match-set (\S+) (src,src|dst,dst)/.exec(r);
      if (set && !inSet(set[1]!)) continue;
      const ifm = /-i (\S+?)(\+?) /.exec(r);
      if (ifm && !(ifm[2] ? iface.startsWith(ifm[1]!) : iface === ifm[1])) continue;
      const macm = /-m mac ! --mac-source (\S+)/.exec(r);
      if (macm && macm[1] === mac) continue;
      const go = /-[gj] (\S+)$/.exec(r)?.[1];
      if (go === "DROP") return `DROP:${chain}`;
      if (go === "pal-from-wl-mac") {
        // Called: falls back here unless it drops.
        const sub = classify(st, family, "from", addr, iface, mac, go);
        if (sub.startsWith("DROP")) return sub;
        continue;
      }
      if (go?.startsWith("pal-")) { next = go; break; }
    }
    if (!next) return "RETURN";
    if (/^pal-fm/.test(next)) { chain = next; continue; }
    if (/^pal-c[ft]_/.test(next)) return next;
    chain = next;
  }
  throw new Error("loop");
}

describe("set-based layout", () => {
  it("an endpoint added, re-addressed, deactivated and re-activated, its class in use: set deltas only", () => {
    const { sink, g, flush } = graph();
    for (let i = 1; i <= 3; i++) g.upsertEndpoint(ep(i, ["a", "b"]));
    flush();
    let mark = sink.calls.length;
    g.upsertEndpoint(ep(4, ["a", "b"]));
    flush();
    // Its IPv4 and IPv6 (address, interface) into the class set of each family.
    expect(kinds(sink, mark)).toEqual(["endpoint-update", "ipset-delta", "ipset-delta"]);
    mark = sink.calls.length;
    g.upsertEndpoint(ep(4, ["a", "b"], { ipv4_nets: ["198.18.9.9"], ipv6_nets: [] }));
    flush();
    expect(kinds(sink, mark).every((k) => k === "ipset-delta" || k === "endpoint-update")).toBe(true);
    mark = sink.calls.length;
    g.upsertEndpoint(ep(4, ["a", "b"], { state: "inactive" }));
    flush();
    expect(kinds(sink, mark).every((k) => k === "ipset-delta" || k === "endpoint-update")).toBe(true);
    mark = sink.calls.length;
    g.upsertEndpoint(ep(4, ["a", "b"]));
    g.deleteEndpoint("hv1/openstack/w1/e");
    flush();
    expect(kinds(sink, mark).every((k) => k === "ipset-delta" || k === "endpoint-update" || k === "endpoint-remove")).toBe(true);
  });

  it("a new ordered profile list brings its class chains; the last endpoint of a class takes them away", () => {
    const { sink, g, flush } = graph();
    g.upsertEndpoint(ep(1, ["a"]));
    flush();
    let mark = sink.calls.length;
    g.upsertEndpoint(ep(2, ["b", "a"])); // order matters: another class than ["a", "b"]
    flush();
    const chains = sink.callsSince(mark).flatMap((c) => c.updates.flatMap((u) => (u.type === "chain-update" ? [u.chain.name] : [])));
    expect(chains).toContain(fromClassChain(classKey(["b", "a"])));
    expect(chains).toContain(toClassChain(classKey(["b", "a"])));
    mark = sink.calls.length;
    g.deleteEndpoint("hv1/openstack/w2/e");
    flush();
    const st = sink.state("hv1").plain();
    expect(Object.keys(st.chains).filter((k) => k.includes(classKey(["b", "a"])))).toEqual([]);
    expect(Object.keys(st.sets).filter((k) => k.includes(classKey(["b", "a"])))).toEqual([]);
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

  it("a MAC is checked per interface: adding an endpoint with a MAC changes the MAC tree only", () => {
    const { sink, g, flush } = graph();
    for (let i = 1; i <= 3; i++) g.upsertEndpoint(ep(i, ["a"], { mac: `02:00:00:00:00:0${i}` }));
    flush();
    const mark = sink.calls.length;
    g.upsertEndpoint(ep(4, ["a"], { mac: "02:00:00:00:00:04" }));
    flush();
    const chains = sink.callsSince(mark).flatMap((c) => c.updates.flatMap((u) => (u.type === "chain-update" ? [u.chain.name] : [])));
    expect([...new Set(chains)]).toEqual(["pal-from-wl-mac"]);
    const st = sink.state("hv1").plain();
    expect(classify(st, 4, "from", "198.18.0.4", "tap4", "02:00:00:00:00:04")).toBe(fromClassChain(classKey(["a"])));
    expect(classify(st, 4, "from", "198.18.0.4", "tap4", "02:00:00:00:00:05")).toBe("DROP:pal-from-wl-mac");
  });

  it("with many classes, every endpoint reaches its own class chain through the tree, and nothing else does — after any history", () => {
    const rnd = mulberry32(5);
    const lists = Array.from({ length: 60 }, (_, i) => [PROFILES[i % 7]!.id, PROFILES[(i + 1 + (i % 5)) % 7]!.id, `x${i}`]);
    const { sink, g, flush } = graph();
    const live = new Map<number, Endpoint>();
    for (let step = 0; step < 800; step++) {
      const i = 1 + Math.floor(rnd() * 250);
      if (live.has(i) && rnd() < 0.3) {
        g.deleteEndpoint(`hv1/openstack/w${i}/e`);
        live.delete(i);
      } else {
        const e = ep(i, lists[Math.floor(rnd() * lists.length)]!, rnd() < 0.2 ? { state: "inactive" } : rnd() < 0.3 ? { ipv4_nets: [`198.19.${i >> 8}.${i & 255}`] } : {});
        g.upsertEndpoint(e);
        live.set(i, e);
      }
      if (rnd() < 0.2) flush();
    }
    flush();
    const st = sink.state("hv1").plain();
    expect(st).toEqual(snapshotState(g, "hv1").plain());
    expect(Object.keys(st.chains).some((k) => k.includes("pal-cfn-"))).toBe(true); // the tree is in use
    for (const [i, e] of live) {
      const iface = `tap${i}`;
      const addr = e.ipv4Nets[0]!.replace(/\/32$/, "");
      if (e.state !== "active") {
        expect(classify(st, 4, "from", addr, iface)).toBe("DROP:pal-from-wl-dispatch");
        expect(classify(st, 4, "to", addr, iface)).toBe("DROP:pal-to-wl-dispatch");
        continue;
      }
      const cls = classKey(e.profileIds);
      expect(classify(st, 4, "from", addr, iface)).toBe(fromClassChain(cls));
      expect(classify(st, 4, "to", addr, iface)).toBe(toClassChain(cls));
      // Inbound is keyed by the destination too: another address on that interface has no endpoint.
      expect(classify(st, 4, "to", "203.0.113.1", iface)).toBe("DROP:pal-to-wl-dispatch");
      expect(classify(st, 6, "from", `2001:db8::${i.toString(16)}`, iface)).toBe(fromClassChain(cls));
      // Anti-spoofing: another source on the same interface (reported as such by the driver, which knows the interface).
      expect(classify(st, 4, "from", "203.0.113.1", iface)).toBe("DROP:pal-from-wl-dispatch");
    }
    // An interface without an endpoint.
    expect(classify(st, 4, "from", "198.18.0.1", "tap999")).toBe("DROP:pal-from-wl-dispatch");
    expect(classify(st, 4, "to", "198.18.0.1", "tap999")).toBe("DROP:pal-to-wl-dispatch");
  });
});
