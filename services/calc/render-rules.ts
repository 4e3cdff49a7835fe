// Profile rules -> iptables rule specs, per IP family.
//
// Verdict plumbing (why marks): a packet between two local workloads must
// pass the sender's outbound and the receiver's inbound rules, so the class
// chains that run an endpoint's profiles (DESIGN §6.5) cannot ACCEPT; they
// RETURN on allow and DROP on deny. A profile chain signals "allowed" to its
// class chain by setting the accept mark and returning; the class chain
// returns as soon as it sees the mark.
import {
  PROTOCOL_NUMBERS, chunkPorts, formatAddress, parseCidr, protocolNumber, ruleFamilies,
  type IpVersion, type Match, type PortRange, type Profile, type Rule,
} from "../model/index.js";
import { mirrorRule } from "../model/mirror.js";
import { mirroredInboundChain, mirroredOutboundChain, tagSet, profileInboundChain, profileOutboundChain } from "./names.js";
import type { CalcConfig } from "./calc-config.js";
import type { ChainDef } from "./desired-state.js";
import { allowReportLines, denyReportLines } from "./render-flow-reports.js";


export function markHex(mark: number): string {
  return `0x${mark.toString(16)}`;
}

export function acceptMarkSpecs(cfg: CalcConfig): { set: string; clear: string; isSet: string; notSet: string } {
  const m = markHex(cfg.acceptMark);
  return {
    set: `-j MARK --set-xmark ${m}/${m}`,
    clear: `-j MARK --set-xmark 0x0/${m}`,
    isSet: `-m mark --mark ${m}/${m}`,
    notSet: `-m mark ! --mark ${m}/${m}`,
  };
}

function protoName(p: string, family: IpVersion): string {
  const n = protocolNumber(p);
  if (n === 58) return family === 6 ? "icmpv6" : "58";
  const name = Object.entries(PROTOCOL_NUMBERS).find(([, v]) => v === n)?.[0];
  return name ?? String(n);
}

export { chunkPorts };

const portList = (ps: readonly PortRange[]) => ps.map((p) => (p.first === p.last ? `${p.first}` : `${p.first}:${p.last}`)).join(",");

/** "a.b.c.d-w.x.y.z": a CIDR as the inclusive range iprange matches. */
function cidrRange(cidr: string): string {
  const c = parseCidr(cidr)!;
  const bits = c.version === 4 ? 32n : 128n;
  const host = (1n << (bits - BigInt(c.prefix))) - 1n;
  return `${formatAddress(c.version, c.addr)}-${formatAddress(c.version, c.addr | host)}`;
}

/**
 * Fragments that do not multiply (everything except positive port lists).
 * iptables allows one -p, one -s and one -d per rule: a negated net beside a
 * positive one goes through the iprange match instead, and a negated
 * protocol beside a positive one is settled in ruleMatchSpecs.
 */
function fixedFragments(m: Match, neg: boolean, family: IpVersion, positive?: Match): string[] {
  const not = neg ? "! " : "";
  const out: string[] = [];
  if (m.protocol !== undefined && !(neg && positive?.protocol !== undefined)) out.push(`${not}-p ${protoName(m.protocol, family)}`);
  if (m.srcNet !== undefined) out.push(neg && positive?.srcNet !== undefined ? `-m iprange ! --src-range ${cidrRange(m.srcNet)}` : `${not}-s ${m.srcNet}`);
  if (m.dstNet !== undefined) out.push(neg && positive?.dstNet !== undefined ? `-m iprange ! --dst-range ${cidrRange(m.dstNet)}` : `${not}-d ${m.dstNet}`);
  if (m.srcTag !== undefined) out.push(`-m set ${not}--match-set ${tagSet(m.srcTag, family)} src`);
  if (m.dstTag !== undefined) out.push(`-m set ${not}--match-set ${tagSet(m.dstTag, family)} dst`);
  if (neg) {
    // Negated lists are AND-ed: "not in chunk 1" and "not in chunk 2" …
    for (const c of chunkPorts(m.srcPorts ?? [])) out.push(`-m multiport ! --sports ${portList(c)}`);
    for (const c of chunkPorts(m.dstPorts ?? [])) out.push(`-m multiport ! --dports ${portList(c)}`);
  }
  if (m.icmpType !== undefined) {
    const tc = m.icmpCode === undefined ? `${m.icmpType}` : `${m.icmpType}/${m.icmpCode}`;
    out.push(family === 4 ? `-m icmp ${not}--icmp-type ${tc}` : `-m icmp6 ${not}--icmpv6-type ${tc}`);
  }
  return out;
}

/**
 * Match specs for one rule in one family: one spec per line the rule needs.
 * Positive port lists longer than multiport's 15 slots are OR-ed across
 * several lines (the cartesian product of source and destination chunks).
 */
export function ruleMatchSpecs(rule: Rule, family: IpVersion): string[] {
  // "protocol P and not protocol P" never matches: no line at all. With two
  // different protocols the negation is implied by the positive one.
  if (rule.match.protocol !== undefined && rule.negated.protocol !== undefined
    && protocolNumber(rule.match.protocol) === protocolNumber(rule.negated.protocol)) return [];
  // Positive protocol first: multiport and icmp matches need it.
  const fixed = [...fixedFragments(rule.match, false, family), ...fixedFragments(rule.negated, true, family, rule.match)];
  const src = rule.match.srcPorts ? chunkPorts(rule.match.srcPorts).map((c) => `-m multiport --sports ${portList(c)}`) : [""];
  const dst = rule.match.dstPorts ? chunkPorts(rule.match.dstPorts).map((c) => `-m multiport --dports ${portList(c)}`) : [""];
  const specs: string[] = [];
  for (const s of src) for (const d of dst) specs.push([...fixed, s, d].filter(Boolean).join(" "));
  return specs;
}

/**
 * `chain` names the profile chain the rules go into: with flow reports on,
 * each rule's report lines carry it and the rule's index in `rules` (the
 * model's index, whatever number of lines the rule needs), DESIGN §6.12.
 */
export function renderRules(rules: readonly Rule[], family: IpVersion, cfg: CalcConfig, chain = ""): string[] {
  const mark = acceptMarkSpecs(cfg);
  const report = cfg.flowLogs === true && chain !== "";
  const out: string[] = [];
  rules.forEach((rule, index) => {
    if (!ruleFamilies(rule).includes(family)) return;
    const specs = ruleMatchSpecs(rule, family);
    if (rule.action === "deny") {
      if (report) out.push(...denyReportLines(cfg, specs, "D", chain, index));
      for (const s of specs) out.push(s ? `${s} -j DROP` : "-j DROP");
    } else {
      for (const s of specs) {
        if (report) out.push(...allowReportLines(cfg, s, chain, index));
        out.push(s ? `${s} ${mark.set}` : mark.set);
      }
      out.push(`${mark.isSet} -j RETURN`);
    }
  });
  return out;
}

export interface RenderedProfile {
  chains: ChainDef[];
  /** ipsets the chains reference: name -> {tag, family}. */
  sets: Map<string, { tag: string; family: IpVersion }>;
}

/** Each rule's reply-direction mirror; rules no reply can match are left out. */
function mirrored(rules: readonly Rule[]): Rule[] {
  return rules.map(mirrorRule).filter((r): r is Rule => r !== undefined);
}

/** Renders a profile once; every host that uses it shares the result. */
export function renderProfile(p: Profile, cfg: CalcConfig): RenderedProfile {
  const chains: ChainDef[] = [];
  const noReports: CalcConfig = { ...cfg, flowLogs: false };
  const sets = new Map<string, { tag: string; family: IpVersion }>();
  for (const family of [4, 6] as const) {
    const inbound = profileInboundChain(p.id);
    const outbound = profileOutboundChain(p.id);
    chains.push({ table: "filter", family, name: inbound, rules: renderRules(p.inboundRules, family, cfg, inbound) });
    chains.push({ table: "filter", family, name: outbound, rules: renderRules(p.outboundRules, family, cfg, outbound) });
    // The mirrored chains (DESIGN §6.5, "Reply-direction re-check chains"):
    // the same rules seen from the reply side, for the re-check of an
    // established connection's reply packets. No report points: a re-check
    // is not a new flow, and the chain name would not resolve to a rule the
    // operator wrote. A mirrored rule references the same tags (swapped), so
    // the sets below cover it.
    chains.push({ table: "filter", family, name: mirroredInboundChain(p.id), rules: renderRules(mirrored(p.inboundRules), family, noReports) });
    chains.push({ table: "filter", family, name: mirroredOutboundChain(p.id), rules: renderRules(mirrored(p.outboundRules), family, noReports) });
    for (const r of [...p.inboundRules, ...p.outboundRules]) {
      if (!ruleFamilies(r).includes(family)) continue;
      for (const tag of [r.match.srcTag, r.match.dstTag, r.negated.srcTag, r.negated.dstTag]) {
        if (tag !== undefined) sets.set(tagSet(tag, family), { tag, family });
      }
    }
  }
  return { chains, sets };
}
