// The Palisade data model (DESIGN §2), as the calculation core sees it.
// Values here are already validated and normalised (see document.ts):
// CIDRs are canonical, MACs lower-case, protocol names lower-case.

export type IpVersion = 4 | 6;
export type Action = "allow" | "deny";
export type EndpointState = "active" | "inactive";

/** Inclusive port range; a single port has first === last. */
export interface PortRange {
  first: number;
  last: number;
}

/** Match criteria; every criterion that is set must hold. */
export interface Match {
  /** Protocol name (tcp, udp, icmp, icmpv6, sctp, udplite) or decimal number. */
  protocol?: string;
  srcNet?: string;
  dstNet?: string;
  srcTag?: string;
  dstTag?: string;
  srcPorts?: PortRange[];
  dstPorts?: PortRange[];
  icmpType?: number;
  icmpCode?: number;
}

export interface Rule {
  action: Action;
  ipVersion?: IpVersion;
  /** Positive criteria. */
  match: Match;
  /** Negated criteria ("!src_net" …): none of them may hold. */
  negated: Match;
}

export interface Profile {
  id: string;
  tags: string[];
  inboundRules: Rule[];
  outboundRules: Rule[];
  /** Free-form metadata; carries no policy meaning (adapters mark what they own here). */
  labels: Record<string, string>;
}

export interface EndpointKey {
  host: string;
  orchestrator: string;
  workload: string;
  id: string;
}

export interface Endpoint extends EndpointKey {
  /** Interface name on the host. */
  name: string;
  state: EndpointState;
  mac?: string;
  /** Host routes (/32). */
  ipv4Nets: string[];
  /** Host routes (/128). */
  ipv6Nets: string[];
  ipv4Gateway?: string;
  ipv6Gateway?: string;
  profileIds: string[];
  labels: Record<string, string>;
  /**
   * The address scope (DESIGN §2.10): addresses are unique within a network,
   * not across networks. Absent = the one default network.
   */
  network?: string;
  /**
   * Further (address or CIDR, MAC) pairs the endpoint may send from and
   * receive for, as Neutron's allowed address pairs (DESIGN §2.11). A pair
   * without a MAC uses the endpoint's own. Absent = none.
   */
  addressPairs?: AddressPair[];
}

/** One allowed address pair: a CIDR (host route for one address) and, optionally, its own MAC. */
export interface AddressPair {
  net: string;
  mac?: string;
}

export type ModelObject =
  | { kind: "Profile"; profile: Profile }
  | { kind: "Endpoint"; endpoint: Endpoint };

export function endpointKeyString(k: EndpointKey): string {
  return `${k.host}/${k.orchestrator}/${k.workload}/${k.id}`;
}

export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = Object.assign(Object.create(null) as Record<string, number>, {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
});

/** Protocols that carry ports (multiport supports exactly these). */
export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 132, 136]);

export function protocolNumber(p: string): number {
  const named = PROTOCOL_NUMBERS[p];
  return named ?? Number(p);
}
