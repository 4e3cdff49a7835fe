// Networks (DESIGN §2.10) and address pairs (§2.11) in the set-based layout
// (§6.5): a small classifier follows packets through the rendered state.
// One host may hold one IPv4 address on two networks with two MACs; a pair
// is sent from and received for like a fixed address, with its own MAC when
// it has one; a CIDR pair's range too; and pair or network changes inside a
// class and network in use are set deltas only.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { networkHash } from "../../services/calc/names.js";
import { renderBridgeChains } from "../../services/driver/plan/bridge-guard.js";
import { cidrContains, parseAddress, parseCidr } from "../../services/model/index.js";
import { classOf, classify } from "../support/classify.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { endpoint, profile } from "../support/model.js";
import { mulberry32, pick, randInt } from "../support/prng.js";

const PROFILES = ["a", "b"].map((id) => profile({ id, tags: [id], inbound_rules: [{}], outbound_rules: [{}] }));
const MAC = (n: number) => `02:00:00:00:00:${n.toString(16).padStart(2, "0")}`;
const VRRP = "00:00:5e:00:01:07";

function graph() {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink);
  for (const p of PROFILES) g.upsertProfile(p);
  let rev = 0;
  return { sink, g, flush: () => g.flush(++rev), st: () => sink.state("hv1").plain() };
}

const ep = (i: number, extra: Record<string, unknown> = {}) =>
  endpoint({ host: "hv1", workload: `w${i}`, id: "e", name: `tap${i}`, profile_ids: ["a"], mac: MAC(i), ipv4_nets: ["10.0.0.5"], ipv6_nets: [], ...extra });
/** What classify says of an endpoint listing these (existing) profiles: outbound, inbound. */
const from = (ids: readonly string[]) => classOf("from", ids.map((id) => `pal-po-${id}`));
const to = (ids: readonly string[]) => classOf("to", ids.map((id) => `pal-pi-${id}`));
const A = from(["a"]);
const inNet = (net: string, addr: string) => cidrContains(parseCidr(net)!, 6, parseAddress(addr)!.addr);

describe("networks and address pairs in the layout", () => {
  it("one IPv4 address on two networks of one host, two MACs: each endpoint passes with its own MAC only", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep(1, { network: "net-a" }));
    g.upsertEndpoint(ep(2, { network: "net-b" }));
    flush();
    const s = st();
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", MAC(1))).toBe(A);
    expect(classify(s, 4, "from", "10.0.0.5", "tap2", MAC(2))).toBe(A);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", MAC(2))).toMatch(/^DROP:/);
    expect(classify(s, 4, "from", "10.0.0.5", "tap2", MAC(1))).toMatch(/^DROP:/);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", MAC(9))).toMatch(/^DROP:/);
    expect(s.sets[`pal4m_${networkHash("net-a")}-10-0`]!.members).toEqual([`10.0.0.5,${MAC(1).toUpperCase()}`]);
    expect(sink.violations()).toEqual([]);
  });

  it("with more networks than a tree node lists, every holder of 10.0.0.5 passes with its MAC and no other", () => {
    const { g, flush, st, sink } = graph();
    const N = 40;
    for (let i = 1; i <= N; i++) g.upsertEndpoint(ep(i, { network: `net-${i}`, profile_ids: [i % 2 ? "a" : "b"] }));
    flush();
    const s = st();
    expect(Object.keys(s.chains).some((c) => c.startsWith("4:pal-fmn-"))).toBe(true); // the scope tree has nodes
    for (let i = 1; i <= N; i++) {
      expect(classify(s, 4, "from", "10.0.0.5", `tap${i}`, MAC(i))).toBe(from([i % 2 ? "a" : "b"]));
      expect(classify(s, 4, "from", "10.0.0.5", `tap${i}`, MAC((i % N) + 1))).toMatch(/^DROP:/);
    }
    // A network leaving the host takes its sets and chain with it.
    for (let i = 1; i <= N; i++) g.deleteEndpoint(`hv1/openstack/w${i}/e`);
    flush();
    expect(Object.keys(st().sets).sort()).toEqual(["pal4i-active", "pal4i-inactive", "pal4i-nomac", "pal4mac", "pal6i-active", "pal6i-inactive"]);
    expect(Object.keys(st().chains).filter((c) => /pal-fm/.test(c))).toEqual([]);
    expect(sink.violations()).toEqual([]);
  });

  it("a VRRP pair: its address with its own MAC only, the fixed address with the endpoint's MAC only", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep(1, { network: "net-a", address_pairs: [{ ip_address: "10.0.0.100", mac_address: VRRP }] }));
    flush();
    const s = st();
    expect(classify(s, 4, "from", "10.0.0.100", "tap1", VRRP)).toBe(A);
    expect(classify(s, 4, "from", "10.0.0.100", "tap1", MAC(1))).toMatch(/^DROP:/);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", MAC(1))).toBe(A);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", VRRP)).toMatch(/^DROP:/);
    expect(classify(s, 4, "to", "10.0.0.100", "tap1")).toBe(to(["a"]));
    // The pair is a member of the endpoint's tags.
    g.upsertProfile(profile({ id: "b", tags: ["b"], inbound_rules: [{ src_tag: "a" }], outbound_rules: [{}] }));
    g.upsertEndpoint(ep(2, { profile_ids: ["b"], ipv4_nets: ["10.9.0.1"] }));
    flush();
    expect(st().sets["pal4t-a"]!.members.sort()).toEqual(["10.0.0.100", "10.0.0.5"]);
  });

  it("the same VRRP pair on two endpoints of one network and host: both may use it", () => {
    const { g, flush, st } = graph();
    const pairs = [{ ip_address: "10.0.0.100", mac_address: VRRP }];
    g.upsertEndpoint(ep(1, { network: "n", address_pairs: pairs }));
    g.upsertEndpoint(ep(2, { network: "n", ipv4_nets: ["10.0.0.6"], address_pairs: pairs }));
    flush();
    for (const t of ["tap1", "tap2"]) expect(classify(st(), 4, "from", "10.0.0.100", t, VRRP)).toBe(A);
  });

  it("fixed IPs win: another endpoint's pair on the same network does not take a fixed address's MAC away", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep(1, { network: "n" }));
    g.upsertEndpoint(ep(2, { network: "n", ipv4_nets: ["10.0.0.6"], address_pairs: [{ ip_address: "10.0.0.5", mac_address: VRRP }] }));
    flush();
    expect(classify(st(), 4, "from", "10.0.0.5", "tap1", MAC(1))).toBe(A);
    expect(classify(st(), 4, "from", "10.0.0.5", "tap2", VRRP)).toMatch(/^DROP:/);
  });

  it("a CIDR pair: its range is sent from with its MAC and received for; outside it, dropped", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep(1, { address_pairs: [{ ip_address: "10.244.0.0/16" }, { ip_address: "10.250.0.0/24", mac_address: VRRP }] }));
    flush();
    const s = st();
    expect(classify(s, 4, "from", "10.244.3.7", "tap1", MAC(1))).toBe(A);
    expect(classify(s, 4, "from", "10.244.3.7", "tap1", VRRP)).toMatch(/^DROP:pal-fme-tap1$/);
    expect(classify(s, 4, "from", "10.250.0.9", "tap1", VRRP)).toBe(A);
    expect(classify(s, 4, "from", "10.250.0.9", "tap1", MAC(1))).toMatch(/^DROP:/);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", MAC(1))).toBe(A);
    expect(classify(s, 4, "from", "10.0.0.5", "tap1", VRRP)).toMatch(/^DROP:/);
    expect(classify(s, 4, "from", "10.245.0.1", "tap1", MAC(1))).toBe("DROP:pal-from-wl-dispatch");
    expect(classify(s, 4, "to", "10.244.200.1", "tap1")).toBe(to(["a"]));
    expect(classify(s, 4, "to", "10.245.0.1", "tap1")).toBe("DROP:pal-to-wl-dispatch");
    // Without any MAC (neither the endpoint's nor its own), a CIDR pair skips the check by the no-MAC set.
    g.upsertEndpoint(ep(1, { mac: undefined, address_pairs: [{ ip_address: "10.244.0.0/16" }] }));
    flush();
    expect(st().sets["pal4i-nomac"]!.members.sort()).toEqual(["10.0.0.5,tap1", "10.244.0.0/16,tap1"]);
    expect(classify(st(), 4, "from", "10.244.3.7", "tap1", VRRP)).toBe(A);
  });

  it("IPv6: a pair with its own MAC makes the interface's check per source", () => {
    const { g, flush, st } = graph();
    g.upsertEndpoint(ep(1, { ipv4_nets: [], ipv6_nets: ["2001:db8::5"], address_pairs: [{ ip_address: "2001:db8::100", mac_address: VRRP }] }));
    flush();
    const s = st();
    expect(classify(s, 6, "from", "2001:db8::100", "tap1", VRRP)).toBe(A);
    expect(classify(s, 6, "from", "2001:db8::100", "tap1", MAC(1))).toMatch(/^DROP:/);
    expect(classify(s, 6, "from", "2001:db8::5", "tap1", MAC(1))).toBe(A);
    expect(classify(s, 6, "from", "2001:db8::5", "tap1", VRRP)).toMatch(/^DROP:/);
  });

  it("IPv6: the driver is told the interface tree's check with the endpoint (for a bridged port, DESIGN §6.3), and the leaf it renders admits exactly what the tree does", () => {
    const { g, flush, st, sink } = graph();
    const cases: Record<string, unknown>[] = [
      { ipv4_nets: [], ipv6_nets: ["2001:db8::5"] },
      { ipv4_nets: [], ipv6_nets: ["2001:db8::5"], address_pairs: [{ ip_address: "2001:db8::100", mac_address: VRRP }] },
      { ipv4_nets: [], ipv6_nets: ["2001:db8::5"], address_pairs: [{ ip_address: "2001:db8:1::/64", mac_address: VRRP }, { ip_address: "2001:db8:2::/64" }] },
    ];
    for (const extra of cases) {
      const mark = sink.calls.length;
      g.upsertEndpoint(ep(1, extra));
      flush();
      const u = sink.callsSince(mark).flatMap((c) => c.updates).find((x) => x.type === "endpoint-update");
      if (u?.type !== "endpoint-update") throw new Error("no endpoint update");
      expect(u.mac6).toBeDefined();
      const leaf = renderBridgeChains(6, ["tap1"], new Map([["tap1", u.mac6!]])).find((c) => c.name === "pal-bgf")!.rules.filter((r) => r.includes("tap1"));
      // The leaf's own matches (the port's set holds every address, so only -s and the MAC decide).
      const leafAdmits = (src: string, mac: string) => leaf.some((r) => {
        const net = /-s (\S+)/.exec(r)?.[1];
        const m = /--mac-source (\S+)/.exec(r)?.[1];
        return (net === undefined || inNet(net, src)) && (m === undefined || m === mac.toUpperCase());
      });
      const s = st();
      for (const src of ["2001:db8::5", "2001:db8::100", "2001:db8:1::9", "2001:db8:2::9"]) {
        for (const mac of [MAC(1), VRRP, MAC(9)]) {
          const own = [...(extra.ipv6_nets as string[]), ...((extra.address_pairs ?? []) as { ip_address: string }[]).map((p) => p.ip_address)];
          if (!own.some((n) => inNet(n, src))) continue; // not the endpoint's address: the port's set drops it first
          const tree = classify(s, 6, "from", src, "tap1", mac);
          expect({ src, mac, bridged: leafAdmits(src, mac) }).toEqual({ src, mac, bridged: tree === A });
        }
      }
    }
  });

  it("pairs added and removed, and an endpoint joining a network already on the host: set deltas only", () => {
    const { g, flush, sink } = graph();
    g.upsertEndpoint(ep(1, { network: "n" }));
    g.upsertEndpoint(ep(2, { network: "n", ipv4_nets: ["10.0.0.6"], ipv6_nets: ["2001:db8::6"] }));
    flush();
    const kinds = (since: number) => [...new Set(sink.callsSince(since).flatMap((c) => c.updates.map((u) => u.type)))].sort();
    for (const pairs of [[{ ip_address: "10.0.0.100", mac_address: VRRP }], [{ ip_address: "10.0.0.101" }], [{ ip_address: "2001:db8::100" }], []]) {
      const mark = sink.calls.length;
      g.upsertEndpoint(ep(2, { network: "n", ipv4_nets: ["10.0.0.6"], ipv6_nets: ["2001:db8::6"], address_pairs: pairs }));
      flush();
      expect(kinds(mark)).toEqual(["endpoint-update", "ipset-delta"]);
    }
    const mark = sink.calls.length;
    g.upsertEndpoint(ep(3, { network: "n", ipv4_nets: ["10.0.0.7"] }));
    flush();
    expect(kinds(mark)).toEqual(["endpoint-update", "ipset-delta"]);
  });

  it("an endpoint moving between networks ends where a fresh graph of the final model is, and the old network's sets go", () => {
    const { g, flush, st, sink } = graph();
    g.upsertEndpoint(ep(1, { network: "net-a", address_pairs: [{ ip_address: "10.0.0.100", mac_address: VRRP }] }));
    g.upsertEndpoint(ep(2, { network: "net-b" }));
    flush();
    g.upsertEndpoint(ep(1, { network: "net-b", ipv4_nets: ["10.0.0.9"], address_pairs: [{ ip_address: "10.0.0.100", mac_address: VRRP }] }));
    flush();
    expect(Object.keys(st().sets).filter((n) => n.includes(networkHash("net-a")))).toEqual([]);
    expect(classify(st(), 4, "from", "10.0.0.100", "tap1", VRRP)).toBe(A);
    expect(classify(st(), 4, "from", "10.0.0.9", "tap1", MAC(1))).toBe(A);
    const fresh = graph();
    fresh.g.upsertEndpoint(ep(2, { network: "net-b" }));
    fresh.g.upsertEndpoint(ep(1, { network: "net-b", ipv4_nets: ["10.0.0.9"], address_pairs: [{ ip_address: "10.0.0.100", mac_address: VRRP }] }));
    fresh.flush();
    expect(st()).toEqual(snapshotState(fresh.g, "hv1").plain());
    expect(st()).toEqual(snapshotState(g, "hv1").plain());
    expect(sink.violations()).toEqual([]);
  });

  it("random histories over many networks, pairs and leaves: the incremental state is the snapshot, and every endpoint passes exactly its own (address, MAC)", () => {
    let withNodes = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const rnd = mulberry32(seed);
      const { g, flush, st, sink } = graph();
      const live = new Map<number, Record<string, unknown>>();
      const variant = (i: number): Record<string, unknown> => {
        const pairs = [
          [], [{ ip_address: "10.0.0.100", mac_address: VRRP }], [{ ip_address: `10.0.${i}.0/24` }], [{ ip_address: "10.0.0.101" }],
          [{ ip_address: "10.0.0.5", mac_address: VRRP }], // the fixed address with a second MAC: a leaf
        ];
        return {
          network: randInt(rnd, 5) === 0 ? undefined : `net-${randInt(rnd, 24)}`,
          state: randInt(rnd, 6) === 0 ? "inactive" : "active",
          mac: randInt(rnd, 8) === 0 ? undefined : MAC(i),
          address_pairs: pick(rnd, pairs),
          profile_ids: [pick(rnd, ["a", "b"])],
        };
      };
      for (let step = 0; step < 120; step++) {
        const i = 1 + randInt(rnd, 30);
        if (live.has(i) && randInt(rnd, 4) === 0) {
          g.deleteEndpoint(`hv1/openstack/w${i}/e`);
          live.delete(i);
        } else {
          const v = variant(i);
          live.set(i, v);
          g.upsertEndpoint(ep(i, v));
        }
        if (randInt(rnd, 3) === 0) flush();
      }
      flush();
      const s = st();
      expect(s).toEqual(snapshotState(g, "hv1").plain());
      expect(sink.violations()).toEqual([]);
      if (Object.keys(s.chains).some((c) => c.startsWith("4:pal-fmn-"))) withNodes++;
      // Networks of the live endpoints: unique (address, network) holders get their MAC; conflicts are fail closed.
      const holders = new Map<string, number>();
      for (const [, v] of live) if (v.state === "active") holders.set(`${v.network}`, (holders.get(`${v.network}`) ?? 0) + 1);
      for (const [i, v] of live) {
        const want = v.state === "active" ? from(v.profile_ids as string[]) : "DROP:pal-from-wl-dispatch";
        const alone = holders.get(`${v.network}`) === 1;
        if (v.mac === undefined || !alone) continue;
        expect(classify(s, 4, "from", "10.0.0.5", `tap${i}`, MAC(i)), `seed ${seed} tap${i}`).toBe(want);
        if (v.state === "active") expect(classify(s, 4, "from", "10.0.0.5", `tap${i}`, MAC(99))).toMatch(/^DROP:/);
      }
    }
    expect(withNodes).toBeGreaterThan(0); // the MAC scope tree had nodes in some histories
  });
});
