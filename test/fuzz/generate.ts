// Seeded random models and packets for the differential test. The same seed
// always gives the same case. Models draw from every criterion of DESIGN §2
// (and its negation), both families, tags, long port lists, ICMP types,
// missing profiles and inactive endpoints; invalid draws are discarded by the
// real validator, so every generated model is one the API would accept.
import { parseDocuments, toDocument, validateObject, type Endpoint, type ModelObject, type PortRange, type Profile, type Rule, type IpVersion, type Match } from "../../services/model/index.js";
import { mulberry32 } from "../support/prng.js";
export { mulberry32 };


export interface LabWorkload {
  name: string;
  host: string;
  iface: string;
  ipv4: string;
  ipv6: string;
  mac: string;
}

export interface FuzzPacket {
  from: string;
  to: string;
  family: IpVersion;
  proto: "tcp" | "udp" | "icmp";
  port: number;
}

export interface FuzzCase {
  seed: number;
  profiles: Profile[];
  endpoints: Endpoint[];
  packets: FuzzPacket[];
}

export const LISTEN_PORTS = [80, 443, 5432, 8080];
/** Ephemeral source ports of the probes are 32768-60999 (Linux default): ranges wholly inside or outside. */
const SRC_PORT_CHOICES: PortRange[][] = [[{ first: 32768, last: 65535 }], [{ first: 1, last: 1023 }], [{ first: 22, last: 22 }, { first: 1024, last: 65535 }]];
const TAGS = ["ta", "tb", "tc", "td"];

export function generateCase(seed: number, workloads: LabWorkload[], opts: { packets?: number } = {}): FuzzCase {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const chance = (p: number) => r() < p;

  function ports(): PortRange[] {
    if (chance(0.15)) {
      // Long lists exercise multiport's 15-slot splitting.
      const out: PortRange[] = [];
      for (let i = 0; i < 18; i++) out.push({ first: 10000 + i * 3, last: 10000 + i * 3 + (i % 3 === 0 ? 1 : 0) });
      out.push({ first: pick(LISTEN_PORTS), last: 0 });
      out[out.length - 1]!.last = out[out.length - 1]!.first;
      return out;
    }
    const pool: PortRange[] = [...LISTEN_PORTS.map((p) => ({ first: p, last: p })), { first: 1, last: 100 }, { first: 400, last: 500 }, { first: 5000, last: 6000 }];
    const n = 1 + Math.floor(r() * 3);
    const out: PortRange[] = [];
    for (let i = 0; i < n; i++) out.push(pick(pool));
    return out;
  }

  function net(family: IpVersion): string {
    const w = pick(workloads);
    if (chance(0.5)) return family === 4 ? `${w.ipv4}/32` : `${w.ipv6}/128`;
    return family === 4 ? pick(["198.18.1.0/24", "198.18.2.0/24", "198.18.0.0/15"]) : pick(["2001:db8:1::/64", "2001:db8:2::/64", "2001:db8::/32"]);
  }

  function rule(): Rule {
    const fam: IpVersion | undefined = chance(0.4) ? pick([4, 6] as const) : undefined;
    const family = fam ?? pick([4, 6] as const); // for family-specific criteria
    const match: Match = {};
    const negated: Match = {};
    const proto = pick(["", "", "tcp", "tcp", "udp", "icmp", "neg"]);
    if (proto === "tcp" || proto === "udp") match.protocol = proto;
    if (proto === "icmp") match.protocol = family === 4 ? "icmp" : "icmpv6";
    if (proto === "neg") negated.protocol = pick(["tcp", "udp", "icmp", "icmpv6"]);
    if (match.protocol === "tcp" || match.protocol === "udp") {
      if (chance(0.5)) match.dstPorts = ports();
      else if (chance(0.3)) negated.dstPorts = ports();
      if (chance(0.1)) match.srcPorts = pick(SRC_PORT_CHOICES);
    }
    if (match.protocol === "icmp" || match.protocol === "icmpv6") {
      const echo = family === 4 ? 8 : 128;
      const types = family === 4 ? [echo, echo, 0, 13] : [echo, echo, 129, 135];
      if (chance(0.6)) {
        match.icmpType = pick(types);
        if (chance(0.3)) match.icmpCode = pick([0, 0, 1]);
      } else if (chance(0.3)) negated.icmpType = pick(types);
    }
    const usesNets = chance(0.3);
    if (usesNets) {
      const which = pick(["src", "dst", "negsrc", "negdst", "both-src", "both-dst"]);
      const n = net(family);
      if (which === "src") match.srcNet = n;
      else if (which === "dst") match.dstNet = n;
      else if (which === "negsrc") negated.srcNet = n;
      else if (which === "negdst") negated.dstNet = n;
      // A criterion and its negation together ("in 198.18.0.0/15 but not in this /24").
      else if (which === "both-src") { match.srcNet = family === 4 ? "198.18.0.0/15" : "2001:db8::/32"; negated.srcNet = n; }
      else { match.dstNet = family === 4 ? "198.18.0.0/15" : "2001:db8::/32"; negated.dstNet = n; }
    }
    if (match.protocol !== undefined && chance(0.1)) negated.protocol = pick(["tcp", "udp", match.protocol]);
    if (chance(0.35)) {
      const tag = chance(0.1) ? "tz-unknown" : pick(TAGS);
      const which = pick(["src", "src", "dst", "negsrc"]);
      if (which === "src") match.srcTag = tag;
      else if (which === "dst") match.dstTag = tag;
      else negated.srcTag = tag;
    }
    const out: Rule = { action: chance(0.25) ? "deny" : "allow", match, negated };
    // The family is explicit sometimes; otherwise implied by CIDRs or ICMP.
    if (fam !== undefined && (chance(0.6) || (!usesNets && !match.icmpType))) out.ipVersion = fam;
    if (fam === undefined && (usesNets || match.protocol === "icmp" || match.protocol === "icmpv6") && chance(0.3)) out.ipVersion = family;
    return out;
  }

  function validRule(): Rule {
    for (;;) {
      const x = rule();
      const probe: ModelObject = { kind: "Profile", profile: { id: "x", tags: [], inboundRules: [x], outboundRules: [], labels: {} } };
      if (validateObject(probe).length === 0) return x;
    }
  }

  const nProfiles = 2 + Math.floor(r() * 4);
  const profiles: Profile[] = [];
  for (let i = 0; i < nProfiles; i++) {
    const tags = TAGS.filter(() => chance(0.3));
    // Bias towards admitting something: otherwise default deny dominates and
    // the allow paths go untested.
    const allowAll = { action: "allow" as const, match: {}, negated: {} };
    const inbound = Array.from({ length: Math.floor(r() * 5) }, validRule);
    if (chance(0.55)) inbound.push(allowAll);
    const outbound = chance(0.8) ? [allowAll] : Array.from({ length: 1 + Math.floor(r() * 4) }, validRule);
    profiles.push({ id: `p${i}`, tags, inboundRules: inbound, outboundRules: outbound, labels: {} });
  }
  const endpoints: Endpoint[] = workloads.map((w) => {
    const n = chance(0.1) ? 0 : 1 + Math.floor(r() * 3);
    const ids = [...new Set(Array.from({ length: n }, () => (chance(0.07) ? "p-missing" : `p${Math.floor(r() * nProfiles)}`)))];
    return {
      host: w.host, orchestrator: "fuzz", workload: w.name, id: "eth0", name: w.iface,
      state: chance(0.05) ? "inactive" : "active", mac: w.mac,
      ipv4Nets: [`${w.ipv4}/32`], ipv6Nets: [`${w.ipv6}/128`], profileIds: ids, labels: {},
    };
  });
  const packets: FuzzPacket[] = [];
  for (let i = 0; i < (opts.packets ?? 24); i++) {
    const from = pick(workloads);
    let to = pick(workloads);
    while (to === from) to = pick(workloads);
    packets.push({ from: from.name, to: to.name, family: pick([4, 6] as const), proto: pick(["tcp", "tcp", "udp", "icmp"] as const), port: pick(LISTEN_PORTS) });
  }
  // Round trip through the document codec: what the test applies is exactly
  // what users could write.
  const docs = [...profiles.map((p) => toDocument({ kind: "Profile", profile: p })), ...endpoints.map((e) => toDocument({ kind: "Endpoint", endpoint: e }))];
  const parsed = parseDocuments(docs);
  return {
    seed,
    profiles: parsed.flatMap((o) => (o.kind === "Profile" ? [o.profile] : [])),
    endpoints: parsed.flatMap((o) => (o.kind === "Endpoint" ? [o.endpoint] : [])),
    packets,
  };
}
