// Synthetic models for benchmarks: deterministic (seeded), realistic tag
// sharing (each profile's rules reference a few other profiles' tags).
import type { Endpoint, Profile, Rule } from "../../services/model/index.js";


export function genProfiles(count: number, rulesPer: number, rand: () => number): Profile[] {
  const out: Profile[] = [];
  for (let p = 0; p < count; p++) {
    const inbound: Rule[] = [];
    for (let r = 0; r < rulesPer; r++) {
      const kind = r % 4;
      const tag = `t${Math.floor(rand() * count)}`;
      if (kind === 0) inbound.push({ action: "allow", match: { protocol: "tcp", srcTag: tag, dstPorts: [{ first: 1000 + r, last: 1000 + r }] }, negated: {} });
      else if (kind === 1) inbound.push({ action: "allow", match: { protocol: "udp", srcNet: `198.18.${r}.0/24`, dstPorts: [{ first: 2000, last: 2100 }] }, negated: {} });
      else if (kind === 2) inbound.push({ action: "deny", match: { protocol: "tcp", srcTag: tag }, negated: { dstPorts: [{ first: 22, last: 22 }] } });
      else inbound.push({ action: "allow", ipVersion: 4, match: { protocol: "icmp", icmpType: 8 }, negated: {} });
    }
    out.push({ id: `p${p}`, tags: [`t${p}`], inboundRules: inbound, outboundRules: [{ action: "allow", match: {}, negated: {} }], labels: {} });
  }
  return out;
}

export function genEndpoint(host: string, i: number, profiles: number, rand: () => number): Endpoint {
  const ids = new Set<string>([`p${Math.floor(rand() * profiles)}`]);
  if (rand() < 0.5) ids.add(`p${Math.floor(rand() * profiles)}`);
  const hostIdx = Number(host.replace(/\D/g, "")) || 0;
  const a = hostIdx * 256 + (i >> 8);
  return {
    host, orchestrator: "bench", workload: `w${i}`, id: "eth0", name: `tap${hostIdx.toString(36)}x${i.toString(36)}`.slice(0, 15), state: "active",
    mac: "02:00:00:00:00:01",
    ipv4Nets: [`10.${(a >> 8) & 255}.${a & 255}.${i & 255}/32`], ipv6Nets: [], profileIds: [...ids], labels: {},
  };
}
