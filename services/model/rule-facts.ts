// Facts about rules that several places rely on, written once (with
// PORT_PROTOCOLS and PROTOCOL_NUMBERS in types.ts): which IPv6 protocol numbers ip6tables cannot match,
// how port lists split into multiport rules, how identifiers and MACs look,
// and an endpoint address's host form. Validation (validate.ts), the
// evaluator behind trace (evaluate.ts), rendering (calc) and the OpenStack
// translation (openstack/translate.ts) all read them from here.

/** The protocols of PORT_PROTOCOLS (types.ts), for messages. */
export const PORT_PROTOCOL_NAMES = "tcp, udp, sctp or udplite";

/**
 * IPv6 extension headers: ip6tables -p matches the upper-layer protocol after
 * them, never these, so a rule naming one cannot be expressed for IPv6.
 */
export const IPV6_EXTENSION_HEADERS: ReadonlyMap<number, string> = new Map([
  [0, "hop-by-hop options"], [43, "ipv6-route"], [44, "ipv6-frag"], [51, "ah"], [60, "ipv6-opts"],
  [135, "mobility header"], [139, "hip"], [140, "shim6"],
]);

/** Port slots in one multiport match (iptables' limit): a single port costs 1, a range 2. */
export const MULTIPORT_SLOTS = 15;

export interface PortSpan {
  first: number;
  last: number;
}

/** Splits a port list into multiport-sized chunks (one iptables rule each). */
export function chunkPorts<P extends PortSpan>(ports: readonly P[]): P[][] {
  const chunks: P[][] = [];
  let cur: P[] = [];
  let used = 0;
  for (const p of ports) {
    const cost = p.first === p.last ? 1 : 2;
    if (used + cost > MULTIPORT_SLOTS) {
      chunks.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(p);
    used += cost;
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}

/** Identifiers (ids, hosts, tags, orchestrators, workloads): letters, digits, '_', '.', '-'; never "." or "..". */
export const ID_RE = /^[A-Za-z0-9_.-]+$/;

/** Why `v` is not a valid identifier of at most `max` characters, or undefined. */
export function idProblem(v: string, max: number): string | undefined {
  if (v.length === 0) return "must not be empty";
  if (v.length > max) return `must be at most ${max} characters`;
  if (!ID_RE.test(v) || v === "." || v === "..") return "may contain only letters, digits, '_', '.' and '-'";
  return undefined;
}

/** A MAC address as the model stores it: six lower-case hex pairs. */
export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** An endpoint's host route (/32, /128) as a bare address; any other net unchanged. */
export function hostAddress(net: string): string {
  return net.endsWith("/32") || net.endsWith("/128") ? net.slice(0, net.lastIndexOf("/")) : net;
}
