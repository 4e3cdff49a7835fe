// A fixed final model plus variants of each object, and a runner that feeds
// a sequence of events into a fresh CalcGraph, for the sequence tests.
import { CalcGraph } from "../../services/calc/calc-graph.js";
import type { CalcConfig } from "../../services/calc/calc-config.js";
import type { Endpoint, Profile } from "../../services/model/types.js";
import { RecordingSink, snapshotState, type PlainHostState } from "./host-state.js";
import { endpoint, keyOf, profile } from "./model.js";
import { pick, randInt } from "./prng.js";

export type Ev =
  | { t: "P"; p: Profile }
  | { t: "dP"; id: string }
  | { t: "E"; e: Endpoint }
  | { t: "dE"; key: string };

export const P = (p: Profile): Ev => ({ t: "P", p });
export const dP = (id: string): Ev => ({ t: "dP", id });
export const E = (e: Endpoint): Ev => ({ t: "E", e });
export const dE = (e: Endpoint): Ev => ({ t: "dE", key: keyOf(e) });

const ports1to20 = Array.from({ length: 20 }, (_, i) => i + 1);

export const FINAL_PROFILES: Record<string, Profile> = {
  db: profile({
    id: "db", tags: ["db"],
    inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }, { action: "deny", "!src_tag": "ops" }],
    outbound_rules: [{}],
  }),
  app: profile({
    id: "app", tags: ["db-user", "app"],
    inbound_rules: [{ protocol: "tcp", src_tag: "web", dst_ports: [80, 443] }],
    outbound_rules: [{ dst_tag: "db" }, { action: "deny" }],
  }),
  web: profile({
    id: "web", tags: ["web"],
    inbound_rules: [{ ip_version: 6, src_net: "2001:db8::/32", protocol: "tcp", dst_ports: ["8000:8080"] }, { src_net: "198.18.0.0/15" }],
    outbound_rules: [{}],
  }),
  ops: profile({
    id: "ops", tags: ["ops", "app"],
    inbound_rules: [{ protocol: "icmp", icmp_type: 8 }, { protocol: "icmpv6", icmp_type: 128, icmp_code: 0 }],
    outbound_rules: [{ protocol: "udp", "!dst_ports": ports1to20, dst_tag: "web" }],
  }),
};

export const PROFILE_VARIANTS: Record<string, Profile[]> = {
  db: [
    profile({ id: "db", tags: ["db", "web"], inbound_rules: [{ protocol: "udp", src_tag: "app", dst_ports: [53] }] }),
    profile({ id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5433] }], outbound_rules: [{}] }),
  ],
  app: [
    profile({ id: "app", tags: ["other"], outbound_rules: [{ dst_tag: "ops" }] }),
    profile({ id: "app", tags: ["db-user", "app"], inbound_rules: [], outbound_rules: [{ dst_tag: "db" }, { action: "deny" }] }),
  ],
  web: [profile({ id: "web", tags: ["web", "db-user"], inbound_rules: [{ action: "deny" }], outbound_rules: [{ dst_tag: "web" }] })],
  ops: [profile({ id: "ops" }), profile({ id: "ops", tags: ["ops"], inbound_rules: [{ src_tag: "tmp-ref" }] })],
};

/** Exists only transiently. */
export const TMP_PROFILE = profile({ id: "tmp", tags: ["db-user", "ops"], inbound_rules: [{ src_tag: "tmp-ref" }, { dst_tag: "db" }] });

const ep = (n: number, host: string, extra: Record<string, unknown>) =>
  endpoint({ host, workload: `vm-${n}`, id: `p${n}`, name: `tap-e${n}`, ...extra });

export const FINAL_ENDPOINTS: Record<string, Endpoint> = {
  // networks and pairs (DESIGN §2.10, §2.11): a VRRP pair with its own MAC
  e1: ep(1, "hv1", { profile_ids: ["db"], ipv4_nets: ["198.18.1.1"], ipv6_nets: ["2001:db8::11"], mac: "02:00:00:00:01:01", network: "net-a", address_pairs: [{ ip_address: "198.18.1.100", mac_address: "00:00:5e:00:01:07" }, { ip_address: "2001:db8::100", mac_address: "00:00:5e:00:01:07" }] }),
  e2: ep(2, "hv1", { profile_ids: ["app", "web"], ipv4_nets: ["198.18.1.2"] }),
  e3: ep(3, "hv2", { profile_ids: ["app"], ipv4_nets: ["198.18.2.3"], ipv6_nets: ["2001:db8::23"] }),
  e4: ep(4, "hv2", { profile_ids: ["missing", "db"], ipv4_nets: ["198.18.2.4"] }),
  e5: ep(5, "hv3", { profile_ids: ["web", "ops"], ipv6_nets: ["2001:db8::35"] }),
  e6: ep(6, "hv3", { profile_ids: ["ops"], state: "inactive", ipv4_nets: ["198.18.3.6"] }),
  // a CIDR pair with the endpoint's MAC (a leaf chain)
  e7: ep(7, "hv1", { profile_ids: [], ipv4_nets: ["198.18.1.7", "198.18.1.77"], mac: "02:00:00:00:01:07", address_pairs: [{ ip_address: "10.244.0.0/16" }] }),
};

export const ENDPOINT_VARIANTS: Record<string, Endpoint[]> = {
  e1: [
    ep(1, "hv1", { name: "tap-e1b", profile_ids: ["db", "app"], ipv4_nets: ["198.18.1.11"] }),
    // moves to another network, pair without its own MAC
    ep(1, "hv1", { profile_ids: ["db"], ipv4_nets: ["198.18.1.1"], mac: "02:00:00:00:01:01", network: "net-b", address_pairs: [{ ip_address: "198.18.1.100" }] }),
  ],
  // shares e3's address (tag refcounts)
  e2: [
    ep(2, "hv1", { profile_ids: ["app"], ipv4_nets: ["198.18.2.3"] }),
    // e1's address on another network of the same host, another MAC
    ep(2, "hv1", { profile_ids: ["app", "web"], ipv4_nets: ["198.18.1.1"], mac: "02:00:00:00:01:02", network: "net-b" }),
  ],
  e3: [ep(3, "hv2", { profile_ids: ["web"], ipv4_nets: ["198.18.2.33"] }), ep(3, "hv2", { profile_ids: ["app", "tmp"], ipv4_nets: ["198.18.2.3"], state: "inactive" })],
  e4: [ep(4, "hv2", { profile_ids: ["db"], ipv4_nets: ["198.18.2.4"] }), ep(4, "hv2", { profile_ids: ["db"], ipv4_nets: ["198.18.2.4"], mac: "02:00:00:00:02:04", network: "net-a", address_pairs: [{ ip_address: "10.250.0.0/24", mac_address: "00:00:5e:00:01:09" }] })],
  e5: [ep(5, "hv3", { profile_ids: ["db"], ipv4_nets: ["198.18.3.5"] })],
  e6: [ep(6, "hv3", { profile_ids: ["ops", "app"], ipv4_nets: ["198.18.3.6"] })],
  // takes e1's interface name on the same host: a conflict while it lasts
  e7: [ep(7, "hv1", { name: "tap-e1", profile_ids: ["db"], ipv4_nets: ["198.18.1.7"] })],
};

/** Exist only transiently. */
export const TMP_ENDPOINTS: Endpoint[] = [
  endpoint({ host: "hv9", workload: "vm-9", id: "p9", name: "tap-e9", profile_ids: ["app", "tmp"], ipv4_nets: ["198.18.9.9"] }),
  // same interface name as e2 on hv1
  endpoint({ host: "hv1", workload: "vm-8", id: "p8", name: "tap-e2", profile_ids: ["db"], ipv4_nets: ["198.18.1.8"] }),
];

export const FINAL_EVENTS: Ev[] = [...Object.values(FINAL_PROFILES).map(P), ...Object.values(FINAL_ENDPOINTS).map(E)];
export const HOSTS = ["hv1", "hv2", "hv3", "hv9"];

export function applyEvent(g: CalcGraph, ev: Ev): void {
  if (ev.t === "P") g.upsertProfile(ev.p);
  else if (ev.t === "dP") g.deleteProfile(ev.id);
  else if (ev.t === "E") g.upsertEndpoint(ev.e);
  else g.deleteEndpoint(ev.key);
}

export type FlushMode = "each" | "end" | { random: () => number };

export function run(events: readonly Ev[], flush: FlushMode, cfg?: CalcConfig) {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink, cfg);
  let rev = 0;
  for (const ev of events) {
    applyEvent(g, ev);
    if (flush === "each" || (typeof flush === "object" && flush.random() < 0.3)) g.flush(++rev);
  }
  g.flush(++rev);
  return { sink, g };
}

export function hostsOf(events: readonly Ev[]): string[] {
  const hs = new Set<string>();
  for (const ev of events) if (ev.t === "E") hs.add(ev.e.host);
  return HOSTS.filter((h) => hs.has(h));
}

export function statesOf(sink: RecordingSink, hosts: readonly string[]): Record<string, PlainHostState> {
  return Object.fromEntries(hosts.map((h) => [h, sink.state(h).plain()]));
}

/** The reference: a fresh graph fed the final model once, read through snapshots. */
export function expectedStates(finalEvents: readonly Ev[], hosts: readonly string[], cfg?: CalcConfig): Record<string, PlainHostState> {
  const { g } = run(finalEvents, "end", cfg);
  return Object.fromEntries(hosts.map((h) => [h, snapshotState(g, h).plain()]));
}

type Chain = Ev[];

/** Event chains for one object that end in its final version (or deleted when `final` is undefined). */
function objectChain(rnd: () => number, final: Ev | undefined, variants: Ev[], del: Ev): Chain {
  const v = () => (variants.length ? pick(rnd, variants) : final ?? del);
  const shapes: (() => Chain)[] = final
    ? [
        () => [final],
        () => [v(), final],
        () => [final, del, final],
        () => [v(), del, v(), final],
        () => [final, v(), final],
        () => [del, final],
        () => [v(), v(), del, del, final],
      ]
    : [
        () => [v(), del],
        () => [v(), v(), del],
        () => [del, v(), del],
        () => [v(), del, v(), del],
      ];
  return pick(rnd, shapes)();
}

/** Random interleaving that keeps each chain's order. */
function interleave(rnd: () => number, chains: Chain[]): Ev[] {
  const cs = chains.map((c) => [...c]).filter((c) => c.length);
  const out: Ev[] = [];
  while (cs.length) {
    const i = randInt(rnd, cs.length);
    out.push(cs[i]!.shift()!);
    if (cs[i]!.length === 0) cs.splice(i, 1);
  }
  return out;
}

/** A random history that ends in the final model (plus deleted transients). */
export function randomHistory(rnd: () => number): Ev[] {
  const chains: Chain[] = [];
  for (const [id, p] of Object.entries(FINAL_PROFILES)) chains.push(objectChain(rnd, P(p), (PROFILE_VARIANTS[id] ?? []).map(P), dP(id)));
  for (const [id, e] of Object.entries(FINAL_ENDPOINTS)) chains.push(objectChain(rnd, E(e), (ENDPOINT_VARIANTS[id] ?? []).map(E), dE(e)));
  if (rnd() < 0.7) chains.push(objectChain(rnd, undefined, [P(TMP_PROFILE)], dP("tmp")));
  for (const t of TMP_ENDPOINTS) if (rnd() < 0.7) chains.push(objectChain(rnd, undefined, [E(t)], dE(t)));
  return interleave(rnd, chains);
}
