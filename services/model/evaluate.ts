// The model's verdict for one packet, and what decided it (DESIGN §2.8) — the
// one evaluator behind `palisadectl trace` and the oracle of the
// differential test against the kernel. Pure.
//
// A new flow from workload A to workload B passes A's outbound rules, then
// B's inbound rules. Each side: inactive -> deny; profiles in profile_ids
// order, rules in order, first allow/deny that matches decides; a missing
// profile denies; nothing matched -> deny. Established/related traffic is
// not judged here (conntrack admits it); neither is traffic between two
// addresses that belong to no endpoint (Palisade does not police it).
import { cidrContains, formatAddress, parseAddress, parseCidr } from "./ip.js";
import { ruleFamilies } from "./validate.js";
import { PORT_PROTOCOLS, endpointKeyString, protocolNumber, type Endpoint, type IpVersion, type Match, type PortRange, type Profile, type Rule } from "./types.js";
import { hostAddress } from "./rule-facts.js";

export interface Packet {
  src: string;
  dst: string;
  /** IP protocol number. */
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
}

export type Decision =
  | { kind: "rule"; profile: string; ruleIndex: number; action: "allow" | "deny" }
  | { kind: "default-deny" }
  | { kind: "missing-profile"; profile: string }
  | { kind: "inactive" }
  | { kind: "no-endpoint" };

export interface TraceStep {
  direction: "outbound" | "inbound";
  /** host/orchestrator/workload/id, or "" when the address is no endpoint's. */
  endpoint: string;
  verdict: "allow" | "deny";
  decision: Decision;
}

export interface TraceResult {
  verdict: "allow" | "deny";
  /** Outbound of the source endpoint, then inbound of the destination (each if a workload). */
  steps: TraceStep[];
  /** False when neither address belongs to an endpoint: Palisade does not police it. */
  policed: boolean;
}

export interface ModelView {
  profiles: ReadonlyMap<string, Profile>;
  endpoints: Iterable<Endpoint>;
}


function inRanges(port: number | undefined, ranges: PortRange[]): boolean {
  return port !== undefined && ranges.some((r) => port >= r.first && port <= r.last);
}

export function createEvaluator(model: ModelView) {
  const endpoints = [...model.endpoints];
  /** address -> endpoint (a host route belongs to exactly one endpoint in a sane model; first wins). */
  const byAddress = new Map<string, Endpoint>();
  /** tag -> member addresses (normalised text). */
  const tagMembers = new Map<string, Set<string>>();
  for (const e of endpoints) {
    const addrs = [...e.ipv4Nets, ...e.ipv6Nets].map(hostAddress);
    for (const a of addrs) if (!byAddress.has(a)) byAddress.set(a, e);
    for (const id of e.profileIds) {
      for (const t of model.profiles.get(id)?.tags ?? []) {
        let s = tagMembers.get(t);
        if (!s) tagMembers.set(t, (s = new Set()));
        for (const a of addrs) s.add(a);
      }
    }
  }

  function matchOne(m: Match, neg: boolean, pkt: Packet, family: IpVersion, src: string, dst: string): boolean {
    // For a positive block every set criterion must hold; for a negated block
    // none may hold (each criterion is negated on its own).
    const holds = (present: boolean, ok: () => boolean) => !present || (neg ? !ok() : ok());
    const net = (cidr: string, addr: string) => {
      const c = parseCidr(cidr)!;
      const a = parseAddress(addr)!;
      return cidrContains(c, family, a.addr);
    };
    return holds(m.protocol !== undefined, () => protocolNumber(m.protocol!) === pkt.protocol)
      && holds(m.srcNet !== undefined, () => net(m.srcNet!, src))
      && holds(m.dstNet !== undefined, () => net(m.dstNet!, dst))
      && holds(m.srcTag !== undefined, () => tagMembers.get(m.srcTag!)?.has(src) ?? false)
      && holds(m.dstTag !== undefined, () => tagMembers.get(m.dstTag!)?.has(dst) ?? false)
      && holds(m.srcPorts !== undefined, () => PORT_PROTOCOLS.has(pkt.protocol) && inRanges(pkt.srcPort, m.srcPorts!))
      && holds(m.dstPorts !== undefined, () => PORT_PROTOCOLS.has(pkt.protocol) && inRanges(pkt.dstPort, m.dstPorts!))
      // ICMP type and code are one criterion ("type T, and code C if given"),
      // as iptables' --icmp-type T/C is.
      && holds(m.icmpType !== undefined, () => pkt.icmpType === m.icmpType && (m.icmpCode === undefined || pkt.icmpCode === m.icmpCode));
  }

  function ruleMatches(rule: Rule, pkt: Packet, family: IpVersion, src: string, dst: string): boolean {
    if (!ruleFamilies(rule).includes(family)) return false;
    return matchOne(rule.match, false, pkt, family, src, dst) && matchOne(rule.negated, true, pkt, family, src, dst);
  }

  function judge(ep: Endpoint, direction: "outbound" | "inbound", pkt: Packet, family: IpVersion, src: string, dst: string): TraceStep {
    const step = (verdict: "allow" | "deny", decision: Decision): TraceStep => ({ direction, endpoint: endpointKeyString(ep), verdict, decision });
    if (ep.state !== "active") return step("deny", { kind: "inactive" });
    for (const id of ep.profileIds) {
      const p = model.profiles.get(id);
      if (!p) return step("deny", { kind: "missing-profile", profile: id });
      const rules = direction === "inbound" ? p.inboundRules : p.outboundRules;
      for (let i = 0; i < rules.length; i++) {
        if (ruleMatches(rules[i]!, pkt, family, src, dst)) return step(rules[i]!.action, { kind: "rule", profile: id, ruleIndex: i, action: rules[i]!.action });
      }
    }
    return step("deny", { kind: "default-deny" });
  }

  return {
    trace(pkt: Packet): TraceResult {
      const s = parseAddress(pkt.src);
      const d = parseAddress(pkt.dst);
      if (!s || !d || s.version !== d.version) throw new Error("source and destination must be addresses of one IP family");
      const family = s.version;
      // Canonical text, as endpoints' nets are stored (IPv6 compressed).
      const src = formatAddress(s.version, s.addr);
      const dst = formatAddress(d.version, d.addr);
      const from = byAddress.get(src);
      const to = byAddress.get(dst);
      const steps: TraceStep[] = [];
      if (from) steps.push(judge(from, "outbound", pkt, family, src, dst));
      if (to && steps.every((x) => x.verdict === "allow")) steps.push(judge(to, "inbound", pkt, family, src, dst));
      const verdict = steps.every((x) => x.verdict === "allow") ? "allow" : "deny";
      return { verdict, steps, policed: Boolean(from || to) };
    },
  };
}
