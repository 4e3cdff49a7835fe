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
//
// Which endpoint an address belongs to (DESIGN §2.8, §2.10, §2.11): an
// endpoint holds an address that is one of its ipv4_nets/ipv6_nets or falls
// inside one of its address pairs. Holders are scoped by network: a
// packet's fromNetwork/toNetwork restrict the sender/receiver to endpoints
// on that network ("" = the default network; absent = any network). Within
// one network the most specific holder wins: a fixed address, then the
// longest pair prefix; among equals, the first endpoint in the model's
// order (as before networks existed). Holders on several networks and no
// flag: AmbiguousAddressError, never a guess. Tags are not scoped: a tag
// matches an address any member holds, on any network (DESIGN §2.10).
import { cidrContains, formatAddress, parseAddress, parseCidr, type Cidr } from "./ip.js";
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
  /** The sender's network ("" = the default network); absent: any network (DESIGN §2.10). */
  fromNetwork?: string;
  /** The receiver's network, as fromNetwork. */
  toNetwork?: string;
}

/**
 * The address is held by endpoints on more than one network and the packet
 * does not say which (DESIGN §2.8): `trace` answers INVALID_ARGUMENT.
 */
export class AmbiguousAddressError extends Error {
  constructor(
    readonly side: "src" | "dst",
    readonly address: string,
    /** Sorted; "" is the default network. */
    readonly networks: string[],
  ) {
    const names = networks.map((n) => (n === "" ? "the default network" : `'${n}'`)).join(", ");
    const flag = side === "src" ? "--from-network" : "--to-network";
    super(`${address} is held by endpoints on several networks (${names}); say which with ${flag} N ("" for the default network)`);
    this.name = "AmbiguousAddressError";
  }
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
  /** The endpoint's network, when it has one (absent: the default network). */
  network?: string;
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


/** A packet's address: canonical text (as endpoints' nets are stored) and value. */
interface Addr {
  text: string;
  addr: bigint;
}

function inRanges(port: number | undefined, ranges: PortRange[]): boolean {
  return port !== undefined && ranges.some((r) => port >= r.first && port <= r.last);
}

/** What one endpoint holds: fixed addresses (canonical text) and pair CIDRs. */
interface Held {
  fixed: string[];
  pairs: Cidr[];
}

function heldBy(e: Endpoint): Held {
  return {
    fixed: [...e.ipv4Nets, ...e.ipv6Nets].map(hostAddress),
    pairs: (e.addressPairs ?? []).flatMap((a) => {
      const c = parseCidr(a.net);
      return c ? [c] : [];
    }),
  };
}

export function createEvaluator(model: ModelView) {
  const endpoints = [...model.endpoints];
  /** fixed address -> its holders, in model order. */
  const byAddress = new Map<string, Endpoint[]>();
  /** Every pair CIDR with its endpoint, in model order (pairs are few; scanned). */
  const pairHolders: { ep: Endpoint; net: Cidr }[] = [];
  /** tag -> member addresses (normalised text) and members' pair nets. */
  const tagMembers = new Map<string, Held>();
  for (const e of endpoints) {
    const held = heldBy(e);
    for (const a of held.fixed) {
      const list = byAddress.get(a);
      if (list) list.push(e);
      else byAddress.set(a, [e]);
    }
    for (const net of held.pairs) pairHolders.push({ ep: e, net });
    for (const id of e.profileIds) {
      for (const t of model.profiles.get(id)?.tags ?? []) {
        let s = tagMembers.get(t);
        if (!s) tagMembers.set(t, (s = { fixed: [], pairs: [] }));
        s.fixed.push(...held.fixed);
        s.pairs.push(...held.pairs);
      }
    }
  }
  const tagSets = new Map([...tagMembers].map(([t, h]) => [t, { fixed: new Set(h.fixed), pairs: h.pairs }]));

  function inTag(tag: string, family: IpVersion, text: string, addr: bigint): boolean {
    const m = tagSets.get(tag);
    return m !== undefined && (m.fixed.has(text) || m.pairs.some((c) => cidrContains(c, family, addr)));
  }

  /**
   * The endpoint that holds the address on `network` (undefined: any
   * network): per network the most specific holder (a fixed address beats
   * any pair; then the longest pair prefix; then model order).
   */
  function holderOf(side: "src" | "dst", family: IpVersion, text: string, addr: bigint, network: string | undefined): Endpoint | undefined {
    const best = new Map<string, { ep: Endpoint; rank: number }>();
    const offer = (ep: Endpoint, rank: number) => {
      const n = ep.network ?? "";
      if (network !== undefined && n !== network) return;
      const cur = best.get(n);
      if (!cur || rank > cur.rank) best.set(n, { ep, rank });
    };
    // Fixed addresses rank above every pair (a pair of equal length included).
    for (const ep of byAddress.get(text) ?? []) offer(ep, 1000);
    for (const { ep, net } of pairHolders) if (cidrContains(net, family, addr)) offer(ep, net.prefix);
    if (best.size > 1) throw new AmbiguousAddressError(side, text, [...best.keys()].sort());
    return best.values().next().value?.ep;
  }

  function matchOne(m: Match, neg: boolean, pkt: Packet, family: IpVersion, src: Addr, dst: Addr): boolean {
    // For a positive block every set criterion must hold; for a negated block
    // none may hold (each criterion is negated on its own).
    const holds = (present: boolean, ok: () => boolean) => !present || (neg ? !ok() : ok());
    const net = (cidr: string, a: Addr) => cidrContains(parseCidr(cidr)!, family, a.addr);
    return holds(m.protocol !== undefined, () => protocolNumber(m.protocol!) === pkt.protocol)
      && holds(m.srcNet !== undefined, () => net(m.srcNet!, src))
      && holds(m.dstNet !== undefined, () => net(m.dstNet!, dst))
      && holds(m.srcTag !== undefined, () => inTag(m.srcTag!, family, src.text, src.addr))
      && holds(m.dstTag !== undefined, () => inTag(m.dstTag!, family, dst.text, dst.addr))
      && holds(m.srcPorts !== undefined, () => PORT_PROTOCOLS.has(pkt.protocol) && inRanges(pkt.srcPort, m.srcPorts!))
      && holds(m.dstPorts !== undefined, () => PORT_PROTOCOLS.has(pkt.protocol) && inRanges(pkt.dstPort, m.dstPorts!))
      // ICMP type and code are one criterion ("type T, and code C if given"),
      // as iptables' --icmp-type T/C is.
      && holds(m.icmpType !== undefined, () => pkt.icmpType === m.icmpType && (m.icmpCode === undefined || pkt.icmpCode === m.icmpCode));
  }

  function ruleMatches(rule: Rule, pkt: Packet, family: IpVersion, src: Addr, dst: Addr): boolean {
    if (!ruleFamilies(rule).includes(family)) return false;
    return matchOne(rule.match, false, pkt, family, src, dst) && matchOne(rule.negated, true, pkt, family, src, dst);
  }

  function judge(ep: Endpoint, direction: "outbound" | "inbound", pkt: Packet, family: IpVersion, src: Addr, dst: Addr): TraceStep {
    const step = (verdict: "allow" | "deny", decision: Decision): TraceStep => ({
      direction, endpoint: endpointKeyString(ep), ...(ep.network !== undefined ? { network: ep.network } : {}), verdict, decision,
    });
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
    /**
     * Whether one rule matches a packet, as `trace` judges it (for property
     * tests of rule transforms such as mirrorRule).
     */
    ruleMatches(rule: Rule, pkt: Packet): boolean {
      const s = parseAddress(pkt.src);
      const d = parseAddress(pkt.dst);
      if (!s || !d || s.version !== d.version) throw new Error("source and destination must be addresses of one IP family");
      const src: Addr = { text: formatAddress(s.version, s.addr), addr: s.addr };
      const dst: Addr = { text: formatAddress(d.version, d.addr), addr: d.addr };
      return ruleMatches(rule, pkt, s.version, src, dst);
    },
    trace(pkt: Packet): TraceResult {
      const s = parseAddress(pkt.src);
      const d = parseAddress(pkt.dst);
      if (!s || !d || s.version !== d.version) throw new Error("source and destination must be addresses of one IP family");
      const family = s.version;
      // Canonical text, as endpoints' nets are stored (IPv6 compressed).
      const src: Addr = { text: formatAddress(s.version, s.addr), addr: s.addr };
      const dst: Addr = { text: formatAddress(d.version, d.addr), addr: d.addr };
      const from = holderOf("src", family, src.text, src.addr, pkt.fromNetwork);
      const to = holderOf("dst", family, dst.text, dst.addr, pkt.toNetwork);
      const steps: TraceStep[] = [];
      if (from) steps.push(judge(from, "outbound", pkt, family, src, dst));
      if (to && steps.every((x) => x.verdict === "allow")) steps.push(judge(to, "inbound", pkt, family, src, dst));
      const verdict = steps.every((x) => x.verdict === "allow") ? "allow" : "deny";
      return { verdict, steps, policed: Boolean(from || to) };
    },
  };
}
