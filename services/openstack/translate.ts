// Neutron -> Palisade translation (DESIGN §11.1). Pure: no
// I/O, no clock, no randomness; the same input in any order gives identical
// output, so a reconciler can compare it with what is stored and write
// nothing on a second sync.
//
// Design notes (each decision, and why):
//
// Groups
// - A security group becomes a Profile: id = group id, tags = [group id],
//   labels {"palisade.io/owner": "openstack"}. Ingress rules -> inbound_rules,
//   egress -> outbound_rules, all action allow.
// - Rules translate 1:1. Neutron materialises its defaults (every group's
//   egress allow-all for IPv4 and IPv6; the default group's ingress from its
//   own members) as ordinary rules in the API response, so 1:1 keeps them,
//   and keeps Neutron's behaviour when an operator deletes them. No implicit
//   rules are added.
// - Rules in a profile are sorted by Neutron rule id (the API's order is not
//   stable); all rules are allow, so order carries no meaning.
// - `stateful: false` groups: Palisade is always stateful. Translated as
//   stateful (replies are allowed where Neutron would need explicit rules:
//   wider than Neutron for replies only), with a warning naming the group.
//
// Rule fields
// - ethertype IPv4/IPv6 -> ip_version 4/6, always set.
// - protocol: null, "any", 0 / "0", and Neutron's names for protocol 0 ("ip",
//   "hopopt") -> no protocol criterion. Neutron's API reference: "The string
//   any (or integer 0) means all IP protocols"; neutron-lib's
//   IPTABLES_PROTOCOL_NAME_MAP renders "0" with no -p argument; Neutron's
//   duplicate-rule key treats "0", "ip" and "hopopt" as one protocol. So
//   protocol 0 is never hop-by-hop in Neutron; "hopopt" gets a warning
//   because its name suggests otherwise.
// - Names Neutron accepts (neutron_lib.constants.IP_PROTOCOL_MAP) map to
//   their numbers; decimal strings and numbers 1-255 are taken as they are.
//   Output uses the model's names for tcp, udp, icmp, icmpv6, sctp, udplite
//   and decimal strings for the rest.
// - IPv6: "icmp", "icmpv6", "ipv6-icmp", 58 and 1 all mean ICMPv6 (Neutron
//   itself rewrites "icmp", "icmpv6" and "1" to ipv6-icmp for IPv6 rules).
//   IPv4 with icmpv6/ipv6-icmp/58 -> refused.
// - IPv6 with an extension-header protocol (ipv6-route 43, ipv6-frag 44, ah
//   51, ipv6-opts 60, mobility 135, hip 139, shim6 140) -> refused: ip6tables
//   matches the upper-layer protocol after extension headers, so no
//   Palisade rule can express it (validate.ts refuses it too). Neutron does
//   nothing special with them (it passes them to ip6tables/OVS, where they
//   never match), so the operator must delete or change the rule.
//   ipv6-nonxt (59) is matchable and translated.
// - Ports (port_range_min/max) with tcp/udp/sctp/udplite -> dst_ports (Neutron
//   port ranges are always destination ports, both directions): min == max
//   or only min -> that port; min < max -> range {first: min, last: max}.
//   The whole range (0-65535 or 1-65535) -> no port criterion, with any
//   protocol, as it is equivalent (Neutron's drivers ignore ports where a
//   protocol has none). Max without min, min > max, out-of-range values ->
//   refused. Any other range with a protocol the model cannot give ports to
//   -> refused; this includes DCCP, which Neutron gives ports but Palisade
//   (multiport: tcp/udp/sctp/udplite) cannot.
// - ICMP/ICMPv6: port_range_min = type, port_range_max = code. Type without
//   code -> type only; code without type -> refused (Neutron refuses it
//   too); type outside 0-254 or code outside 0-255 -> refused (the model's
//   ranges: type 255 is reserved).
// - remote_ip_prefix: ingress -> src_net, egress -> dst_net; a bare address
//   is a host route; canonicalised (host bits cleared, as netaddr/iptables
//   match it); a prefix of the other family -> refused; 0.0.0.0/0 and ::/0
//   -> no criterion (equivalent: ip_version is always set).
// - remote_group_id: ingress -> src_tag, egress -> dst_tag (tag = group id).
//   A remote group missing from the input is kept (unknown tag = empty set,
//   the rule matches no one) with a warning.
// - remote_address_group_id: resolved from the address groups given: one
//   rule per address of the rule's family (sorted, deduplicated); an address
//   group with no address of that family contributes no rule (matches
//   nothing, as in Neutron), with a warning. Not given / not found ->
//   refused, telling the operator to pass --address-groups FILE.
// - More than one of remote_ip_prefix, remote_group_id and
//   remote_address_group_id -> refused (Neutron refuses it too).
//
// Ports
// - Only device_owner "compute:*" with a non-empty binding:host_id and a
//   binding that succeeded (binding:vif_type not "binding_failed" or
//   "unbound") become endpoints. Others go to `skipped` with a reason: Neutron applies no
//   security groups to network-owned ports (DHCP, routers: "trusted"), and
//   an unbound port has no host. binding:host_id is admin-only; when it is
//   absent the reason says so.
// - Endpoint: host = binding:host_id, orchestrator "openstack", workload =
//   device_id, id = port id, name = "tap" + first 11 characters of the port
//   id (the name Nova and Neutron give the TAP), mac = mac_address
//   lower-case, state = admin_state_up ? active : inactive (status is
//   operational and ignored), profile_ids = security_groups sorted
//   (duplicates dropped; all rules allow, so order has no meaning, and
//   Neutron's is not stable), labels {"palisade.io/owner": "openstack"},
//   network = network_id (DESIGN §2.10: addresses are unique within a
//   network, so tenants' overlapping subnets both work).
// - Live migration (DESIGN §11.6): given the port's bindings, the same
//   endpoint also on the host of every INACTIVE binding that did not fail
//   (migrationHosts) — the destination before activation, the source after
//   it, until Nova deletes that binding.
// - Networks are address scopes: ports on different networks never compete
//   for an address (two tenants on the same subnet both keep theirs).
//   Within one network, fixed IPs win (withFixedIpsWinning, DESIGN §11.8):
//   any tenant can write any pair on its own port, so a pair must not take
//   another port's fixed IP on the same network. A single-address pair
//   naming one is left out (warning); a CIDR pair covering some is replaced
//   by the minimal CIDRs covering the rest (warning), or left out when
//   those exceed the model's limit on pairs (LIMITS.netsPerEndpoint). "Other
//   ports" are every port in the input with a device_owner (an unbound VM,
//   a router's gateway), not those without one: that is how Neutron users
//   reserve a VRRP VIP, an address meant to be claimed by pairs.
// - Problems: by default any problem refuses the whole input; with
//   onProblem "leave-out" only the offending rule / group / port is left
//   out (fail closed) and reported (TranslateOptions).
// - Addresses: fixed_ips as /32, /128 (ipv4_nets/ipv6_nets).
//   allowed_address_pairs as address_pairs (DESIGN §2.11), canonical,
//   deduplicated, sorted numerically: a CIDR pair (a Kubernetes pod range)
//   is kept as it is; a pair whose MAC is the port's (or absent: Neutron
//   fills in the port's) carries no MAC; a pair with another MAC (VRRP's
//   00:00:5e:00:01:<vrid>) keeps it, so that MAC may be used for that net
//   only, as Neutron allows. Neutron's "any address" pairs 0.0.0.0/0 and
//   ::/0 become their two /1 halves (an ipset hash:net member needs a
//   prefix of at least 1). A pair equal to one of the port's fixed IPs with
//   the port's MAC adds nothing and is dropped.
// - port_security_enabled false: Neutron applies no filtering and no
//   anti-spoofing. Palisade cannot express an unfiltered port: the endpoint
//   gets profile_ids [NO_PORT_SECURITY_PROFILE] (emitted once, only when
//   needed: allow all inbound and outbound, both families; no tags) and no
//   mac, so any MAC passes, but anti-spoofing by address still applies
//   (traffic from addresses not on the port or its pairs is dropped; pairs
//   carry no MAC there). One warning per such port. (Neutron refuses pairs
//   on a port without port security, so such pairs are rare.) The operator
//   tier still applies there (below): its "before" profiles come first, so
//   an operator's deny holds on an unfiltered port too; its "after"
//   profiles are listed but never decide (allow-all decides first).
// - Operator tier (DESIGN §11.12, operator-policy.ts): profile_ids =
//   [the operator's "before" profiles selecting the port, in file order] +
//   [its groups, sorted, or NO_PORT_SECURITY_PROFILE] + [the "after" ones, in
//   file order]. A port with no groups gets the operator profiles alone.
//   Every operator profile is emitted (owned, with PLACEMENT_LABEL), whether
//   it selects a port or not. Group ids with the operator prefix are
//   refused: the prefix is the operator's.
// - A port referencing a group not in the input: kept (Palisade treats the
//   missing profile as deny-all: fail safe), warning.
// - Host, device and port ids must pass the model's id validation; if not,
//   refused: the reconciler must reject the whole sync.
//
// Errors: every problem in the whole input is collected; in "refuse" mode
// they are thrown at once as a TranslateError, in "leave-out" mode returned in
// `leftOut`. As a last safety net every produced object is run through the
// model's validateObject; an object failing it is a problem like any other.
import {
  INTERFACE_RE, IPV6_EXTENSION_HEADERS, LIMITS, MAC_RE, PORT_PROTOCOLS, cidrContains, idProblem as modelIdProblem, endpointKeyString, formatCidr, parseCidr, printable, validateObject,
  type AddressPair, type Cidr, type Endpoint, type IpVersion, type Match, type ModelObject, type Profile, type Rule,
} from "../model/index.js";
import { OPERATOR_PREFIX, PLACEMENT_LABEL, selects, type OperatorPolicy } from "./operator-policy.js";
import {
  TranslateError,
  type NeutronAddressGroup, type NeutronBinding, type NeutronPort, type NeutronSecurityGroup, type NeutronSecurityGroupRule, type TranslateIssue,
} from "./neutron-types.js";

export { parseAddressGroupsFile, parsePortsFile, parseSecurityGroupsFile, TranslateError, formatTranslateIssue } from "./neutron-types.js";
export type {
  NeutronAddressGroup, NeutronAllowedAddressPair, NeutronBinding, NeutronFixedIp, NeutronPort, NeutronSecurityGroup, NeutronSecurityGroupRule,
  TranslateIssue,
} from "./neutron-types.js";

export const OWNER_LABEL = "palisade.io/owner";
export const ORCHESTRATOR = "openstack";
export const OWNER_VALUE = ORCHESTRATOR;
export const NO_PORT_SECURITY_PROFILE = "openstack-no-port-security";
/** The skip reason of a port listed without admin rights (sync.ts refuses such inputs). */
export const SKIP_NO_BINDING = "binding:host_id is absent (Neutron shows it to admins only): list the ports with admin credentials";

export interface TranslateInput {
  securityGroups: NeutronSecurityGroup[];
  ports: NeutronPort[];
  addressGroups?: NeutronAddressGroup[];
  /**
   * Port bindings (GET /v2.0/ports/{id}/bindings) of the ports that have
   * more than their active one: a live migration (DESIGN §11.6). Ports not
   * here have one binding, binding:host_id.
   */
  bindings?: ReadonlyMap<string, NeutronBinding[]>;
  /** The operator tier (operator-policy.ts); absent: none. */
  operatorPolicy?: OperatorPolicy;
}

export interface TranslateResult {
  /** Profiles sorted by id, then endpoints sorted by key. */
  objects: ModelObject[];
  warnings: string[];
  /** Ports that are not endpoints, sorted by port id. */
  skipped: { port: string; reason: string }[];
  /** With onProblem "leave-out": what was left out, and why (empty otherwise). */
  leftOut: TranslateIssue[];
}

export interface TranslateOptions {
  /**
   * "refuse" (default): any untranslatable rule, group or port throws a
   * TranslateError listing every problem, and nothing should be written.
   * "leave-out": the offending rule, group or port is left out and reported
   * in `leftOut`; everything else is translated. That is fail-closed —
   * Neutron rules only allow, a missing profile denies, a port without an
   * endpoint is dropped — and it keeps one tenant's odd rule from freezing
   * the sync (and so every revocation) for the whole cloud.
   */
  onProblem?: "refuse" | "leave-out";
}

// ---------------------------------------------------------------------------
// Protocols

/** neutron_lib.constants.IP_PROTOCOL_MAP (plus "any"). */
const NEUTRON_PROTOCOLS: ReadonlyMap<string, number> = new Map([
  ["any", 0], ["ip", 0], ["hopopt", 0],
  ["icmp", 1], ["igmp", 2], ["ipip", 4], ["tcp", 6], ["egp", 8], ["udp", 17], ["dccp", 33],
  ["ipv6-encap", 41], ["ipv6-route", 43], ["ipv6-frag", 44], ["rsvp", 46], ["gre", 47], ["esp", 50], ["ah", 51],
  ["icmpv6", 58], ["ipv6-icmp", 58], ["ipv6-nonxt", 59], ["ipv6-opts", 60],
  ["ospf", 89], ["vrrp", 112], ["pgm", 113], ["sctp", 132], ["udplite", 136],
]);

/** Numbers the model spells by name. */
const MODEL_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "icmp"], [6, "tcp"], [17, "udp"], [58, "icmpv6"], [132, "sctp"], [136, "udplite"],
]);

type Report = (field: string, reason: string) => void;

/** Neutron protocol -> number (0 = any), or undefined after reporting. */
function protocolNumber(p: string | number | null | undefined, report: Report): number | undefined {
  if (p === null || p === undefined) return 0;
  if (typeof p === "number") {
    if (Number.isInteger(p) && p >= 0 && p <= 255) return p;
    report("protocol", `${printable(String(p))} is not a protocol number 0-255`);
    return undefined;
  }
  const s = p.trim().toLowerCase();
  if (s === "") return 0;
  if (/^\d{1,3}$/.test(s)) {
    const n = Number(s);
    if (n <= 255) return n;
  }
  const named = NEUTRON_PROTOCOLS.get(s);
  if (named !== undefined) return named;
  report("protocol", `'${printable(p)}' is not a protocol Neutron accepts (a name such as tcp, udp, icmp, ipv6-icmp, gre, or a number 0-255)`);
  return undefined;
}

// ---------------------------------------------------------------------------
// Small helpers

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The model's identifier rule, with the offending value quoted. */
function idProblem(v: string, max: number = LIMITS.idLength): string | undefined {
  const p = modelIdProblem(v, max);
  return p?.startsWith("may contain") ? `'${printable(v)}' ${p}` : p;
}

function ownerLabels(): Record<string, string> {
  return { [OWNER_LABEL]: OWNER_VALUE };
}

function compareCidr(a: Cidr, b: Cidr): number {
  if (a.version !== b.version) return a.version - b.version;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.prefix - b.prefix;
}

/** Canonical, deduplicated, numerically sorted. */
function sortedUnique(cidrs: Cidr[]): string[] {
  const seen = new Map<string, Cidr>();
  for (const c of cidrs) seen.set(formatCidr(c), c);
  return [...seen.values()].sort(compareCidr).map(formatCidr);
}

// ---------------------------------------------------------------------------
// Rules

interface AddressGroupIndex {
  byId: Map<string, { name?: string; nets: Cidr[] }>;
}

interface Context {
  issues: TranslateIssue[];
  warnings: string[];
  groupIds: Set<string>;
  addressGroups?: AddressGroupIndex;
  operatorPolicy?: OperatorPolicy;
}

function groupLabel(g: NeutronSecurityGroup): string {
  return g.name ? `security group ${printable(g.id)} (${printable(g.name)})` : `security group ${printable(g.id)}`;
}

/** One Neutron rule -> zero or more Palisade rules; undefined after reporting a refusal. */
function translateRule(rule: NeutronSecurityGroupRule, ctx: Context, groupName = "security group"): Rule[] | undefined {
  const object = `${groupName} rule ${printable(rule.id)}`;
  const before = ctx.issues.length;
  const report: Report = (field, reason) => ctx.issues.push({ object, field, reason });

  const ingress = rule.direction === "ingress";
  if (rule.direction !== "ingress" && rule.direction !== "egress") report("direction", "must be 'ingress' or 'egress'");
  const et = String(rule.ethertype).toLowerCase();
  const ipVersion: IpVersion | undefined = et === "ipv4" ? 4 : et === "ipv6" ? 6 : undefined;
  if (ipVersion === undefined) report("ethertype", "must be 'IPv4' or 'IPv6'");

  const match: Match = {};

  // Protocol.
  let proto = protocolNumber(rule.protocol, report);
  if (proto !== undefined && ipVersion !== undefined) {
    if (ipVersion === 6 && proto === 1) proto = 58;
    if (ipVersion === 4 && proto === 58) {
      report("protocol", `'${printable(String(rule.protocol))}' is ICMPv6, which does not exist for ethertype IPv4; use icmp`);
      proto = undefined;
    } else if (ipVersion === 6 && proto !== 0 && IPV6_EXTENSION_HEADERS.has(proto)) { // 0 is "any" in Neutron
      report("protocol", `'${printable(String(rule.protocol))}' (${proto}, ${IPV6_EXTENSION_HEADERS.get(proto)}) is an IPv6 extension header: ip6tables matches the upper-layer protocol after extension headers, so this rule cannot be expressed (in Neutron it never matches either); delete the rule or change its protocol`);
      proto = undefined;
    }
    if (proto === 0 && typeof rule.protocol === "string" && rule.protocol.trim().toLowerCase() === "hopopt") {
      ctx.warnings.push(`${object}: protocol 'hopopt' is protocol 0, which Neutron treats as any protocol; translated as any protocol, not IPv6 hop-by-hop`);
    }
  }
  if (proto !== undefined && proto !== 0) match.protocol = MODEL_NAMES.get(proto) ?? String(proto);

  // Ports, or ICMP type/code.
  const min = rule.port_range_min ?? null;
  const max = rule.port_range_max ?? null;
  const badInt = (v: number | null) => v !== null && !Number.isInteger(v);
  if (badInt(min)) report("port_range_min", "must be an integer");
  if (badInt(max)) report("port_range_max", "must be an integer");
  if (proto !== undefined && !badInt(min) && !badInt(max)) {
    if (proto === 1 || proto === 58) {
      if (min === null && max !== null) {
        report("port_range_max", `ICMP code ${max} is given without an ICMP type (port_range_min)`);
      }
      if (min !== null) {
        if (min < 0 || min > 254) report("port_range_min", `ICMP type ${min} is outside 0-254 (255 is reserved)`);
        else match.icmpType = min;
      }
      if (max !== null && min !== null) {
        if (max < 0 || max > 255) report("port_range_max", `ICMP code ${max} is outside 0-255`);
        else match.icmpCode = max;
      }
    } else if (min !== null || max !== null) {
      if (min === null) report("port_range_max", `port ${max} is given without port_range_min`);
      else if (min < 0 || min > 65535) report("port_range_min", `port ${min} is outside 0-65535`);
      else if (max !== null && (max < 0 || max > 65535)) report("port_range_max", `port ${max} is outside 0-65535`);
      else if (max !== null && min > max) report("port_range_min", `port range ${min}-${max} has port_range_min > port_range_max`);
      else {
        const last = max ?? min;
        const whole = last === 65535 && (min === 0 || min === 1);
        if (whole) {
          // Every port: equivalent to no port criterion.
        } else if (PORT_PROTOCOLS.has(proto)) {
          match.dstPorts = [{ first: min, last }];
        } else if (proto === 0) {
          report("port_range_min", `ports ${min}-${last} are given without a protocol; ports need tcp, udp, sctp or udplite`);
        } else {
          const what = proto === 33 ? "dccp (Neutron accepts DCCP ports; Palisade matches ports only for tcp, udp, sctp and udplite)" : `protocol '${printable(String(rule.protocol))}'`;
          report("port_range_min", `ports ${min}-${last} cannot be matched for ${what}`);
        }
      }
    }
  }

  // Remote: at most one of prefix, group, address group.
  const prefix = rule.remote_ip_prefix ?? null;
  const remoteGroup = rule.remote_group_id ?? null;
  const addressGroup = rule.remote_address_group_id ?? null;
  const remotes = [prefix && "remote_ip_prefix", remoteGroup && "remote_group_id", addressGroup && "remote_address_group_id"].filter(Boolean);
  if (remotes.length > 1) report(String(remotes[1]), `only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be set (got ${remotes.join(" and ")})`);

  if (prefix) {
    const c = parseCidr(prefix.trim());
    if (!c) report("remote_ip_prefix", `'${printable(prefix)}' is not an IP address or CIDR`);
    else if (ipVersion !== undefined && c.version !== ipVersion) {
      report("remote_ip_prefix", `'${printable(prefix)}' is an IPv${c.version} prefix but the rule's ethertype is IPv${ipVersion}`);
    } else if (c.prefix > 0) {
      if (ingress) match.srcNet = formatCidr(c);
      else match.dstNet = formatCidr(c);
    }
  }
  if (remoteGroup) {
    const bad = idProblem(remoteGroup);
    if (bad) report("remote_group_id", `${bad} (a group id is used as a Palisade tag)`);
    else {
      if (ingress) match.srcTag = remoteGroup;
      else match.dstTag = remoteGroup;
      if (!ctx.groupIds.has(remoteGroup)) {
        ctx.warnings.push(`${object}: remote group ${printable(remoteGroup)} is not in the input; the rule matches no one until that group appears (unknown tag = empty set)`);
      }
    }
  }
  let nets: (string | undefined)[] = [undefined];
  if (addressGroup) {
    const found = ctx.addressGroups?.byId.get(addressGroup);
    if (ctx.addressGroups === undefined) {
      report("remote_address_group_id", `refers to address group ${printable(addressGroup)}, but no address groups were given; pass --address-groups FILE (the body of GET /v2.0/address-groups)`);
    } else if (!found) {
      report("remote_address_group_id", `address group ${printable(addressGroup)} is not in the address groups given; pass --address-groups FILE with all address groups (GET /v2.0/address-groups)`);
    } else if (ipVersion !== undefined) {
      const ofFamily = found.nets.filter((c) => c.version === ipVersion);
      nets = sortedUnique(ofFamily).map((n) => (n.endsWith("/0") ? undefined : n));
      if (nets.length === 0) {
        ctx.warnings.push(`${object}: address group ${printable(addressGroup)} has no IPv${ipVersion} address; the rule matches nothing (as in Neutron)`);
      }
    }
  }

  if (ctx.issues.length !== before || ipVersion === undefined) return undefined;
  return nets.map((net) => {
    const m: Match = { ...match };
    if (net !== undefined) {
      if (ingress) m.srcNet = net;
      else m.dstNet = net;
    }
    return { action: "allow", ipVersion, match: m, negated: {} };
  });
}

function translateGroup(g: NeutronSecurityGroup, ctx: Context): Profile | undefined {
  const name = groupLabel(g);
  const bad = idProblem(g.id);
  if (bad) ctx.issues.push({ object: name, field: "id", reason: `${bad} (the group id is the Palisade profile id and tag)` });
  if (g.stateful === false) {
    ctx.warnings.push(`${name} is stateless (stateful: false); Palisade is always stateful: translated as stateful, so replies to allowed traffic are allowed without explicit rules`);
  }
  const inbound: Rule[] = [];
  const outbound: Rule[] = [];
  const rules = [...g.security_group_rules].sort((a, b) => compare(a.id, b.id));
  for (const r of rules) {
    const out = translateRule(r, ctx, `security group ${printable(g.id)}`);
    if (!out) continue;
    (r.direction === "ingress" ? inbound : outbound).push(...out);
  }
  // A rule with a problem is left out above (refuse mode throws at the end
  // anyway); only a problem with the group itself drops the profile.
  if (bad) return undefined;
  return { id: g.id, tags: [g.id], inboundRules: inbound, outboundRules: outbound, labels: ownerLabels() };
}

function noPortSecurityProfile(): Profile {
  const all = (v: IpVersion): Rule => ({ action: "allow", ipVersion: v, match: {}, negated: {} });
  return {
    id: NO_PORT_SECURITY_PROFILE,
    tags: [],
    inboundRules: [all(4), all(6)],
    outboundRules: [all(4), all(6)],
    labels: ownerLabels(),
  };
}

// ---------------------------------------------------------------------------
// Ports

/** Why a port is not an endpoint, or undefined when it is one. */
function skipReason(p: NeutronPort): string | undefined {
  const owner = p.device_owner ?? "";
  if (!owner.startsWith("compute:")) {
    if (owner.startsWith("network:")) {
      return `device_owner '${printable(owner)}': Neutron applies no security groups to network-owned ports (DHCP, routers); they carry no security meaning in Palisade`;
    }
    if (owner === "") return "no device_owner: the port is not attached to an instance";
    return `device_owner '${printable(owner)}' is not an instance port (only 'compute:*' ports become endpoints)`;
  }
  const host = p["binding:host_id"];
  if (host === undefined) {
    return SKIP_NO_BINDING;
  }
  if (host === null || host === "") return "not bound to a host (binding:host_id is empty): no endpoint until Nova binds it";
  // Neutron keeps binding:host_id when no mechanism driver could bind the
  // port there (a dead agent, a host without the network): no host serves
  // it, as for an unbound port.
  const vif = p["binding:vif_type"];
  if (vif === "binding_failed" || vif === "unbound") {
    return `binding:vif_type is '${vif}' on host ${printable(host)}: no host is set up to serve the port; no endpoint until Neutron binds it`;
  }
  return undefined;
}


function translatePort(p: NeutronPort, ctx: Context, needNoPortSecurity: { value: boolean }): Endpoint | undefined {
  const object = `port ${printable(p.id)}`;
  const before = ctx.issues.length;
  const report: Report = (field, reason) => ctx.issues.push({ object, field, reason });
  const host = p["binding:host_id"] ?? "";

  let bad = idProblem(host, LIMITS.hostLength);
  if (bad) report("binding:host_id", `${bad} (the host id is the Palisade endpoint host)`);
  bad = idProblem(p.device_id ?? "");
  if (bad) report("device_id", `${bad} (the device id is the Palisade endpoint workload)`);
  bad = idProblem(p.id);
  if (bad) report("id", `${bad} (the port id is the Palisade endpoint id)`);
  const badNetwork = p.network_id ? idProblem(p.network_id) : undefined;
  if (badNetwork) report("network_id", `${badNetwork} (the network id is the Palisade endpoint's network)`);
  const name = interfaceName(p.id);
  if (!bad && !INTERFACE_RE.test(name)) report("id", `interface name '${printable(name)}' (tap + 11 characters of the port id) is not a valid interface name`);

  const portSecurity = p.port_security_enabled !== false;
  const mac = (p.mac_address ?? "").toLowerCase();
  if (!MAC_RE.test(mac)) report("mac_address", `'${printable(p.mac_address ?? "")}' is not a MAC address like fa:16:3e:00:00:01`);

  const nets: Cidr[] = [];
  (p.fixed_ips ?? []).forEach((f, i) => {
    const c = parseCidr(f.ip_address.trim());
    if (!c) report(`fixed_ips[${i}].ip_address`, `'${printable(f.ip_address)}' is not an IP address`);
    else if (c.prefix !== (c.version === 4 ? 32 : 128)) report(`fixed_ips[${i}].ip_address`, `'${printable(f.ip_address)}' is not a single address`);
    else nets.push(c);
  });
  const pairs: { net: Cidr; mac?: string }[] = [];
  (p.allowed_address_pairs ?? []).forEach((pair, i) => {
    const c = parseCidr(pair.ip_address.trim());
    if (!c) {
      report(`allowed_address_pairs[${i}].ip_address`, `'${printable(pair.ip_address)}' is not an IP address or CIDR`);
      return;
    }
    const pairMac = pair.mac_address?.toLowerCase();
    if (pairMac !== undefined && !MAC_RE.test(pairMac)) {
      report(`allowed_address_pairs[${i}].mac_address`, `'${printable(pair.mac_address!)}' is not a MAC address like fa:16:3e:00:00:01`);
      return;
    }
    // Without port security there is no MAC check at all; otherwise a MAC
    // other than the port's is the pair's own (VRRP), usable for that net only.
    const own = !portSecurity || pairMac === undefined || pairMac === mac ? undefined : pairMac;
    // Neutron's "any address" pair: a /0 cannot be a hash:net member, its two halves can (DESIGN §2.11).
    const halves = c.prefix === 0 ? [{ ...c, prefix: 1 }, { ...c, addr: 1n << BigInt(c.version === 4 ? 31 : 127), prefix: 1 }] : [c];
    for (const h of halves) pairs.push(own === undefined ? { net: h } : { net: h, mac: own });
  });

  let profileIds: string[];
  if (portSecurity) {
    // Sorted: every Neutron rule allows, so the order carries no meaning, and
    // Neutron does not keep it stable — a flip must not rewrite the endpoint.
    profileIds = [...new Set(p.security_groups ?? [])].sort(compare);
    for (const g of profileIds) {
      const b = idProblem(g);
      if (b) report("security_groups", `${b} (a group id is a Palisade profile id)`);
      else if (g.startsWith(OPERATOR_PREFIX)) report("security_groups", `'${printable(g)}' starts with '${OPERATOR_PREFIX}', which is reserved for the operator tier`);
      else if (!ctx.groupIds.has(g)) {
        ctx.warnings.push(`${object}: security group ${printable(g)} is not in the input; Palisade treats the missing profile as deny-all until it appears`);
      }
    }
  } else {
    profileIds = [NO_PORT_SECURITY_PROFILE];
    needNoPortSecurity.value = true;
    const ignored = (p.security_groups ?? []).length ? ` (its security groups ${(p.security_groups ?? []).map(printable).join(", ")} are ignored, as Neutron ignores them)` : "";
    ctx.warnings.push(`${object}: port security is disabled; Neutron filters nothing on it. Palisade cannot express an unfiltered port: it gets profile ${NO_PORT_SECURITY_PROFILE} (allow all) and no MAC check, but traffic from addresses not on the port is still dropped${ignored}`);
  }
  // The operator tier around the groups (DESIGN §11.12): file order within each placement.
  const operator = (ctx.operatorPolicy?.profiles ?? []).filter((op) => selects(op, p));
  profileIds = [
    ...operator.filter((op) => op.placement === "before").map((op) => op.profile.id),
    ...profileIds,
    ...operator.filter((op) => op.placement === "after").map((op) => op.profile.id),
  ];

  if (ctx.issues.length !== before) return undefined;
  const v4 = sortedUnique(nets.filter((c) => c.version === 4));
  const v6 = sortedUnique(nets.filter((c) => c.version === 6));
  // A pair equal to one of the port's own fixed IPs with the port's MAC adds nothing.
  const fixedText = new Set(nets.map(formatCidr));
  const pairList = sortedPairs(pairs.filter((x) => x.mac !== undefined || !fixedText.has(formatCidr(x.net))));
  const e: Endpoint = {
    host,
    orchestrator: ORCHESTRATOR,
    workload: p.device_id,
    id: p.id,
    name,
    state: p.admin_state_up ? "active" : "inactive",
    ipv4Nets: v4,
    ipv6Nets: v6,
    profileIds,
    labels: ownerLabels(),
  };
  if (portSecurity) e.mac = mac;
  if (p.network_id) e.network = p.network_id;
  if (pairList.length) e.addressPairs = pairList;
  return e;
}

/** Canonical, deduplicated, sorted numerically (then by MAC): output must not depend on Neutron's order. */
function sortedPairs(pairs: { net: Cidr; mac?: string }[]): AddressPair[] {
  const seen = new Map<string, { net: Cidr; mac?: string }>();
  for (const x of pairs) seen.set(`${formatCidr(x.net)} ${x.mac ?? ""}`, x);
  return [...seen.values()]
    .sort((a, b) => compareCidr(a.net, b.net) || compare(a.mac ?? "", b.mac ?? ""))
    .map((x) => (x.mac === undefined ? { net: formatCidr(x.net) } : { net: formatCidr(x.net), mac: x.mac }));
}

// ---------------------------------------------------------------------------

function indexAddressGroups(groups: NeutronAddressGroup[], issues: TranslateIssue[]): AddressGroupIndex {
  const byId = new Map<string, { name?: string; nets: Cidr[] }>();
  for (const g of [...groups].sort((a, b) => compare(a.id, b.id))) {
    const object = `address group ${printable(g.id)}`;
    if (byId.has(g.id)) {
      issues.push({ object, field: "id", reason: "appears twice in the address groups given" });
      continue;
    }
    const nets: Cidr[] = [];
    g.addresses.forEach((a, i) => {
      const c = parseCidr(a.trim());
      if (!c) issues.push({ object, field: `addresses[${i}]`, reason: `'${printable(a)}' is not an IP address or CIDR` });
      else nets.push(c);
    });
    byId.set(g.id, g.name === undefined ? { nets } : { name: g.name, nets });
  }
  return { byId };
}

/**
 * Translates Neutron security groups and ports into Palisade profiles and
 * endpoints. Throws TranslateError listing every problem if any input is not
 * translatable (nothing should be written then).
 */
export function translate(input: TranslateInput, options: TranslateOptions = {}): TranslateResult {
  const issues: TranslateIssue[] = [];
  const warnings: string[] = [];
  const skipped: { port: string; reason: string }[] = [];

  const groups = [...input.securityGroups].sort((a, b) => compare(a.id, b.id));
  const groupIds = new Set<string>();
  const duplicateGroups = new Set<string>();
  for (const g of groups) {
    if (groupIds.has(g.id)) {
      issues.push({ object: groupLabel(g), field: "id", reason: "appears twice in the security groups given" });
      duplicateGroups.add(g.id);
    }
    if (g.id === NO_PORT_SECURITY_PROFILE) {
      issues.push({ object: groupLabel(g), field: "id", reason: `is the id Palisade reserves for ports without port security` });
    }
    if (g.id.startsWith(OPERATOR_PREFIX)) {
      issues.push({ object: groupLabel(g), field: "id", reason: `starts with '${OPERATOR_PREFIX}', which is reserved for the operator tier` });
      duplicateGroups.add(g.id); // not translated: the id is the operator's
    }
    groupIds.add(g.id);
  }
  const ctx: Context = { issues, warnings, groupIds };
  if (input.operatorPolicy) ctx.operatorPolicy = input.operatorPolicy;
  if (input.addressGroups !== undefined) ctx.addressGroups = indexAddressGroups(input.addressGroups, issues);

  const profiles: Profile[] = [];
  for (const g of groups) {
    if (duplicateGroups.has(g.id)) continue; // which copy is right is unknowable: neither
    const p = translateGroup(g, ctx);
    if (p) profiles.push(p);
  }

  const ports = [...input.ports].sort((a, b) => compare(a.id, b.id));
  const portIds = new Set<string>();
  let endpoints: Endpoint[] = [];
  const needNoPortSecurity = { value: false };
  for (const p of ports) {
    if (portIds.has(p.id)) {
      issues.push({ object: `port ${printable(p.id)}`, field: "id", reason: "appears twice in the ports given" });
      continue;
    }
    portIds.add(p.id);
    const why = skipReason(p);
    if (why !== undefined) {
      skipped.push({ port: p.id, reason: why });
      continue;
    }
    const e = translatePort(p, ctx, needNoPortSecurity);
    if (e) {
      // The same endpoint (workload, id, addresses, profiles) on every host
      // with an inactive binding: one address on two hosts during a
      // migration, which the model allows (its key holds the host).
      for (const host of [e.host, ...migrationHosts(p, input.bindings?.get(p.id), ctx)]) {
        endpoints.push(host === e.host ? e : { ...e, host });
      }
    }
  }
  endpoints = withFixedIpsWinning(endpoints, fixedIpOwners(ports), warnings);
  if (needNoPortSecurity.value) profiles.push(noPortSecurityProfile());
  for (const op of input.operatorPolicy?.profiles ?? []) {
    profiles.push({ ...op.profile, labels: { ...ownerLabels(), [PLACEMENT_LABEL]: op.placement } });
  }

  profiles.sort((a, b) => compare(a.id, b.id));
  endpoints.sort((a, b) => compare(endpointKeyString(a), endpointKeyString(b)));
  const objects: ModelObject[] = [
    ...profiles.map((profile): ModelObject => ({ kind: "Profile", profile })),
    ...endpoints.map((endpoint): ModelObject => ({ kind: "Endpoint", endpoint })),
  ];
  // Safety net: whatever the checks above missed, the model must accept every object.
  const valid = objects.filter((o) => {
    const found = validateObject(o);
    for (const i of found) {
      issues.push({ object: i.document, field: i.field, reason: `${i.reason} (the translated object fails Palisade's validation)` });
    }
    return found.length === 0;
  });
  if (issues.length && (options.onProblem ?? "refuse") === "refuse") throw new TranslateError(issues);
  return { objects: valid, warnings, skipped, leftOut: issues };
}

/**
 * The hosts other than binding:host_id where the port must also be an
 * endpoint (DESIGN §11.6): those of its INACTIVE bindings — the
 * destination of a live migration before Nova activates it (the guest may
 * run there before the activation), and the source after it, until Nova
 * deletes that binding — except where the binding failed (no host serves
 * it). Sorted; a host id the model refuses is reported and left out.
 */
function migrationHosts(p: NeutronPort, bindings: NeutronBinding[] | undefined, ctx: Context): string[] {
  if (!bindings) return [];
  const active = p["binding:host_id"] ?? "";
  const hosts = new Set<string>();
  for (const b of bindings) {
    if (b.status !== "INACTIVE" || b.host === active || b.vif_type === "binding_failed") continue;
    const bad = idProblem(b.host, LIMITS.hostLength);
    if (bad) ctx.issues.push({ object: `port ${printable(p.id)}`, field: "bindings.host", reason: `${bad} (an inactive binding's host is a Palisade endpoint host); no endpoint there` });
    else hosts.add(b.host);
  }
  return [...hosts].sort(compare);
}

/**
 * network -> fixed address (canonical host route) -> the ids of the ports
 * holding it. Every port in the input counts, endpoint or not (an unbound
 * VM's address, a router's gateway are theirs), except ports without a
 * device_owner: that is how Neutron users reserve a VIP for VRRP (the
 * keepalived recipe), an address meant to be claimed by pairs.
 */
function fixedIpOwners(ports: NeutronPort[]): Map<string, Map<string, Set<string>>> {
  const out = new Map<string, Map<string, Set<string>>>();
  for (const p of ports) {
    if (!p.device_owner) continue;
    const network = p.network_id ?? "";
    let m = out.get(network);
    if (!m) out.set(network, (m = new Map()));
    for (const f of p.fixed_ips ?? []) {
      const c = parseCidr(f.ip_address.trim());
      if (!c || c.prefix !== (c.version === 4 ? 32 : 128)) continue;
      const k = formatCidr(c);
      const s = m.get(k);
      if (s) s.add(p.id);
      else m.set(k, new Set([p.id]));
    }
  }
  return out;
}

/** The minimal CIDRs covering `c` without the host routes `holes` (all inside it). */
function subtractHosts(c: Cidr, holes: Cidr[]): Cidr[] {
  if (holes.length === 0) return [c];
  const bits = c.version === 4 ? 32 : 128;
  if (c.prefix === bits) return [];
  const low: Cidr = { version: c.version, addr: c.addr, prefix: c.prefix + 1 };
  const high: Cidr = { version: c.version, addr: c.addr | (1n << BigInt(bits - c.prefix - 1)), prefix: c.prefix + 1 };
  const inside = (h: Cidr, half: Cidr) => cidrContains(half, h.version, h.addr);
  return [...subtractHosts(low, holes.filter((h) => inside(h, low))), ...subtractHosts(high, holes.filter((h) => inside(h, high)))];
}

/**
 * Fixed IPs win, within one network (DESIGN §11.8). Any tenant can write
 * any pair on its own port, so a pair must not let a port send as (or
 * receive for, or join groups with) another port's fixed IP on the same
 * network: a single-address pair naming one is left out; a CIDR pair
 * covering some is replaced by the minimal CIDRs covering the rest, or left
 * out when those would exceed the model's limit on pairs. Addresses on
 * different networks never compete: networks are address scopes (DESIGN
 * §2.10), so two tenants may use the same subnet.
 */
function withFixedIpsWinning(endpoints: Endpoint[], owners: Map<string, Map<string, Set<string>>>, warnings: string[]): Endpoint[] {
  const warned = new Set<string>();
  const warn = (text: string) => {
    // Migration copies of one port would repeat the same warning.
    if (!warned.has(text)) warnings.push(text);
    warned.add(text);
  };
  return endpoints.map((e) => {
    if (!e.addressPairs?.length) return e;
    const fixed = owners.get(e.network ?? "");
    const others = (net: string) => [...(fixed?.get(net) ?? [])].filter((id) => id !== e.id);
    const kept: { net: Cidr; mac?: string }[] = [];
    const pieces: { pair: AddressPair; nets: Cidr[] }[] = [];
    for (const pair of e.addressPairs) {
      const c = parseCidr(pair.net)!;
      const bits = c.version === 4 ? 32 : 128;
      if (c.prefix === bits) {
        const by = others(pair.net);
        if (by.length) {
          warn(`port ${e.id}: allowed address pair ${pair.net} is the fixed IP of ${by.map((id) => `port ${id}`).join(", ")} on network ${e.network ?? "(none)"}; left out (fixed IPs win: a pair cannot take another port's address)`);
        } else kept.push(pair.mac === undefined ? { net: c } : { net: c, mac: pair.mac });
        continue;
      }
      const holes: Cidr[] = [];
      const holders = new Set<string>();
      for (const [net, ids] of fixed ?? []) {
        const h = parseCidr(net)!;
        const theirs = [...ids].filter((id) => id !== e.id);
        if (theirs.length && cidrContains(c, h.version, h.addr)) {
          holes.push(h);
          for (const id of theirs) holders.add(id);
        }
      }
      if (!holes.length) kept.push(pair.mac === undefined ? { net: c } : { net: c, mac: pair.mac });
      else pieces.push({ pair, nets: subtractHosts(c, holes.sort(compareCidr)) });
      if (holes.length) {
        warn(`port ${e.id}: allowed address pair ${pair.net} covers the fixed IPs of ${[...holders].sort(compare).map((id) => `port ${id}`).join(", ")} on network ${e.network ?? "(none)"}; they are cut out of it (fixed IPs win)`);
      }
    }
    for (const { pair, nets } of pieces) {
      if (kept.length + nets.length > LIMITS.netsPerEndpoint) {
        warn(`port ${e.id}: allowed address pair ${pair.net} without other ports' fixed IPs needs ${nets.length} CIDRs, more than an endpoint may hold (${LIMITS.netsPerEndpoint} pairs); left out (its traffic is dropped by anti-spoofing: fail closed)`);
        continue;
      }
      for (const net of nets) kept.push(pair.mac === undefined ? { net } : { net, mac: pair.mac });
    }
    const out = sortedPairs(kept);
    const same = out.length === e.addressPairs.length && out.every((x, i) => x.net === e.addressPairs![i]!.net && x.mac === e.addressPairs![i]!.mac);
    if (same) return e;
    const copy: Endpoint = { ...e };
    if (out.length) copy.addressPairs = out;
    else delete copy.addressPairs;
    return copy;
  });
}

/** The interface name Nova and Neutron give a port's TAP: "tap" + the first 11 characters of the port id. */
export function interfaceName(portId: string): string {
  return `tap${portId.slice(0, 11)}`;
}
