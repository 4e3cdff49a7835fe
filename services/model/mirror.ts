/**
 * Reply-direction mirroring of a rule (DESIGN §6.5, §6.14): the rule that
 * matches a connection's REPLY packet (addresses and ports swapped, an ICMP
 * query answered by its reply type) exactly when the original rule matches
 * the connection's original packet. Used to re-judge established
 * connections from their reply direction when policy changes.
 */
import { protocolNumber, type Match, type Rule } from "./types.js";

/** ICMP query type -> its reply type, per family (RFC 792/950, RFC 4443). */
const QUERY_REPLY: Record<number, Map<number, number>> = {
  1: new Map([[8, 0], [13, 14], [15, 16], [17, 18]]),
  58: new Map([[128, 129], [139, 140]]),
};

function swap(m: Match): Match {
  const out: Match = {};
  if (m.protocol !== undefined) out.protocol = m.protocol;
  if (m.dstNet !== undefined) out.srcNet = m.dstNet;
  if (m.srcNet !== undefined) out.dstNet = m.srcNet;
  if (m.dstTag !== undefined) out.srcTag = m.dstTag;
  if (m.srcTag !== undefined) out.dstTag = m.srcTag;
  if (m.dstPorts !== undefined) out.srcPorts = m.dstPorts;
  if (m.srcPorts !== undefined) out.dstPorts = m.srcPorts;
  return out;
}

/**
 * The mirrored rule, or undefined when the rule can never match a reply (a
 * positive ICMP type that is not a query: no connection starts with it, so
 * no reply answers it). A negated non-query ICMP type holds for every reply
 * (replies carry reply types) and is dropped. ICMP codes are kept: the
 * reply types above answer with the query's code (0).
 */
export function mirrorRule(rule: Rule): Rule | undefined {
  // validate.ts admits icmp_type only with a positive protocol icmp/icmpv6.
  const replies = rule.match.protocol !== undefined ? QUERY_REPLY[protocolNumber(rule.match.protocol)] : undefined;
  const match = swap(rule.match);
  const negated = swap(rule.negated);
  if (rule.match.icmpType !== undefined) {
    const r = replies?.get(rule.match.icmpType);
    if (r === undefined) return undefined;
    match.icmpType = r;
    if (rule.match.icmpCode !== undefined) match.icmpCode = rule.match.icmpCode;
  }
  if (rule.negated.icmpType !== undefined) {
    const r = replies?.get(rule.negated.icmpType);
    if (r !== undefined) {
      negated.icmpType = r;
      if (rule.negated.icmpCode !== undefined) negated.icmpCode = rule.negated.icmpCode;
    }
  }
  return { action: rule.action, ...(rule.ipVersion !== undefined ? { ipVersion: rule.ipVersion } : {}), match, negated };
}
