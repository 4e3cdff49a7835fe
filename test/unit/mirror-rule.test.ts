// mirrorRule (DESIGN §6.5, §6.14): the mirrored rule matches a connection's
// reply packet iff the rule matches its original packet, judged by the
// model evaluator's own rule matching.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createEvaluator, mirrorRule, type Endpoint, type Match, type Packet, type Profile, type Rule } from "../../services/model/index.js";

const V4 = ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"];
const V6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::1", "2001:db8:1::2"];
const NET4 = ["10.0.0.0/24", "10.0.1.0/24", "10.0.0.2/32", "0.0.0.0/0"];
const NET6 = ["2001:db8::/64", "2001:db8:1::/64", "2001:db8::2/128", "::/0"];
const PORTS = [22, 80, 443, 5000];
const ICMP_TYPES: Record<number, number[]> = { 1: [0, 3, 8, 13, 14, 15, 17, 18], 58: [1, 128, 129, 135, 139, 140] };
const QUERY: Record<number, Map<number, number>> = { 1: new Map([[8, 0], [13, 14], [15, 16], [17, 18]]), 58: new Map([[128, 129], [139, 140]]) };

// Tags: "a" held by the .1 addresses, "b" by the 10.0.0.x / 2001:db8:: ones.
const ep = (id: string, v4: string, v6: string, profiles: string[]): Endpoint => ({
  host: "h", orchestrator: "o", workload: id, id: "e", name: `tap${id}`, state: "active", mac: "02:00:00:00:00:01",
  ipv4Nets: [`${v4}/32`], ipv6Nets: [`${v6}/128`], profileIds: profiles, labels: {},
} as unknown as Endpoint);
const prof = (id: string, tags: string[]): Profile => ({ id, tags, inboundRules: [], outboundRules: [], labels: {} });
const evaluator = createEvaluator({
  profiles: new Map([["pa", prof("pa", ["a"])], ["pb", prof("pb", ["b"])], ["pab", prof("pab", ["a", "b"])]]),
  endpoints: [ep("w1", V4[0]!, V6[0]!, ["pab"]), ep("w2", V4[1]!, V6[1]!, ["pb"]), ep("w3", V4[2]!, V6[2]!, ["pa"]), ep("w4", V4[3]!, V6[3]!, [])],
});

const famArb = fc.constantFrom(4 as const, 6 as const);
const protoArb = (fam: 4 | 6) => fc.constantFrom(6, 17, fam === 4 ? 1 : 58);
const ranges = fc.uniqueArray(fc.constantFrom(...PORTS), { minLength: 1, maxLength: 2 }).map((ps) => ps.map((p) => ({ first: p, last: p + (p === 80 ? 363 : 0) })));

function matchArb(fam: 4 | 6, proto: number, positive: boolean): fc.Arbitrary<Match> {
  const nets = fam === 4 ? NET4 : NET6;
  const icmp = proto === 1 || proto === 58;
  const ports = proto === 6 || proto === 17;
  return fc.record({
    srcNet: fc.option(fc.constantFrom(...nets), { nil: undefined }),
    dstNet: fc.option(fc.constantFrom(...nets), { nil: undefined }),
    srcTag: fc.option(fc.constantFrom("a", "b"), { nil: undefined }),
    dstTag: fc.option(fc.constantFrom("a", "b"), { nil: undefined }),
    srcPorts: ports ? fc.option(ranges, { nil: undefined }) : fc.constant(undefined),
    dstPorts: ports ? fc.option(ranges, { nil: undefined }) : fc.constant(undefined),
    icmpType: icmp ? fc.option(fc.constantFrom(...ICMP_TYPES[proto]!), { nil: undefined }) : fc.constant(undefined),
    icmpCode: fc.option(fc.constantFrom(0, 1), { nil: undefined }),
  }).map((m) => {
    const out: Match = {};
    if (positive) out.protocol = proto === 1 ? "icmp" : proto === 58 ? "icmpv6" : proto === 6 ? "tcp" : "udp";
    for (const [k, v] of Object.entries(m)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
    if (out.icmpType === undefined) delete out.icmpCode;
    return out;
  });
}

const caseArb = famArb.chain((fam) => protoArb(fam).chain((proto) => fc.record({
  fam: fc.constant(fam),
  rule: fc.record({
    action: fc.constantFrom("allow" as const, "deny" as const),
    ipVersion: fc.option(fc.constant(fam), { nil: undefined }),
    match: matchArb(fam, proto, true),
    negated: matchArb(fam, proto, false),
  }).map((r) => { if (r.ipVersion === undefined) delete (r as Partial<Rule>).ipVersion; return r as Rule; }),
  // The original packet of a connection: of the rule's protocol or another.
  proto: fc.constantFrom(proto, 6, 17, fam === 4 ? 1 : 58),
  src: fc.constantFrom(...(fam === 4 ? V4 : V6)),
  dst: fc.constantFrom(...(fam === 4 ? V4 : V6)),
  srcPort: fc.constantFrom(...PORTS, 40000),
  dstPort: fc.constantFrom(...PORTS, 443),
  // Only a query starts an ICMP connection that has replies.
  query: fc.constantFrom(...[...QUERY[fam === 4 ? 1 : 58]!.keys()]),
  code: fc.constantFrom(0, 1),
})));

describe("mirrorRule", () => {
  it("matches the reply packet iff the rule matches the original packet", () => {
    fc.assert(fc.property(caseArb, (c) => {
      const icmp = c.proto === 1 || c.proto === 58;
      const orig: Packet = icmp
        ? { src: c.src, dst: c.dst, protocol: c.proto, icmpType: c.query, icmpCode: c.code }
        : { src: c.src, dst: c.dst, protocol: c.proto, srcPort: c.srcPort, dstPort: c.dstPort };
      const reply: Packet = icmp
        ? { src: c.dst, dst: c.src, protocol: c.proto, icmpType: QUERY[c.proto]!.get(c.query)!, icmpCode: c.code }
        : { src: c.dst, dst: c.src, protocol: c.proto, srcPort: c.dstPort, dstPort: c.srcPort };
      const m = mirrorRule(c.rule);
      const want = evaluator.ruleMatches(c.rule, orig);
      const got = m !== undefined && evaluator.ruleMatches(m, reply);
      expect(got).toBe(want);
      if (m) expect(m.action).toBe(c.rule.action);
    }), { numRuns: 5000, seed: 21 });
  });

  it("maps query types, omits a positive non-query type, drops a negated one", () => {
    const r = (match: Match, negated: Match = {}): Rule => ({ action: "allow", match, negated });
    expect(mirrorRule(r({ protocol: "icmp", icmpType: 8 }))?.match).toEqual({ protocol: "icmp", icmpType: 0 });
    expect(mirrorRule(r({ protocol: "icmpv6", icmpType: 128, icmpCode: 0 }))?.match).toEqual({ protocol: "icmpv6", icmpType: 129, icmpCode: 0 });
    expect(mirrorRule(r({ protocol: "icmp", icmpType: 3 }))).toBeUndefined();
    expect(mirrorRule(r({ protocol: "icmp" }, { icmpType: 3, srcNet: "10.0.0.0/8" }))?.negated).toEqual({ dstNet: "10.0.0.0/8" });
    expect(mirrorRule(r({ protocol: "tcp", srcTag: "a", dstPorts: [{ first: 80, last: 80 }] }))?.match)
      .toEqual({ protocol: "tcp", dstTag: "a", srcPorts: [{ first: 80, last: 80 }] });
  });
});
