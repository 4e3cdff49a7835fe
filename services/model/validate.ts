// Validation of the model as Calico v1 did it (identifier charsets, ports,
// ICMP, address families), shared by the CLI (early, friendly errors) and the
// controller (authoritative: every API write passes here).
//
// Why so strict: every string that survives validation may end up inside an
// iptables-restore or ipset line. The charsets below are the guarantee that
// nothing can break out of its token there.
import { parseCidr, formatCidr } from "./ip.js";
import { LIMITS } from "./limits.js";
import { ID_RE, IPV6_EXTENSION_HEADERS, MAC_RE, PORT_PROTOCOL_NAMES, chunkPorts, idProblem } from "./rule-facts.js";
import {
  PORT_PROTOCOLS, PROTOCOL_NUMBERS, protocolNumber,
  type Endpoint, type IpVersion, type Match, type Profile, type Rule,
} from "./types.js";

export { ID_RE };
export const INTERFACE_RE = /^[A-Za-z0-9_-]{1,15}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9_./-]{1,253}$/;
const LABEL_VALUE_RE = /^[A-Za-z0-9_.-]{0,63}$/;

type Report = (field: string, reason: string) => void;

function checkId(report: Report, field: string, v: string, max: number = LIMITS.idLength): void {
  const problem = idProblem(v, max);
  if (problem) report(field, problem);
}

/** Families a rule can be rendered into; empty = contradictory (mixed) rule. */
export function ruleFamilies(rule: Rule): IpVersion[] {
  let fams: IpVersion[] = rule.ipVersion ? [rule.ipVersion] : [4, 6];
  const need = (v: IpVersion) => { fams = fams.filter((f) => f === v); };
  for (const m of [rule.match, rule.negated]) {
    for (const net of [m.srcNet, m.dstNet]) {
      const c = net === undefined ? undefined : parseCidr(net);
      if (c) need(c.version);
    }
  }
  const p = rule.match.protocol;
  if (p === "icmp" || p === "1") need(4);
  if (p === "icmpv6" || p === "58") need(6);
  return fams;
}

function validateMatch(report: Report, prefix: string, m: Match, rule: Rule): void {
  const f = (name: string) => `${prefix}${name}`;
  if (m.protocol !== undefined) {
    // Object.hasOwn: "constructor" or "__proto__" must not pass as names.
    if (!Object.hasOwn(PROTOCOL_NUMBERS, m.protocol) && !/^(?:[1-9]\d{0,2})$/.test(m.protocol)) {
      report(f("protocol"), `must be one of ${Object.keys(PROTOCOL_NUMBERS).join(", ")} or a number 1-255`);
    } else if (protocolNumber(m.protocol) < 1 || protocolNumber(m.protocol) > 255) {
      report(f("protocol"), "must be a number 1-255");
    }
  }
  for (const k of ["src_net", "dst_net"] as const) {
    const v = k === "src_net" ? m.srcNet : m.dstNet;
    if (v !== undefined && !parseCidr(v)) report(f(k), `'${printable(v)}' is not an IPv4 or IPv6 CIDR`);
  }
  for (const k of ["src_tag", "dst_tag"] as const) {
    const v = k === "src_tag" ? m.srcTag : m.dstTag;
    if (v !== undefined) checkId(report, f(k), v);
  }
  const proto = rule.match.protocol === undefined ? undefined : protocolNumber(rule.match.protocol);
  if (m.protocol !== undefined && IPV6_EXTENSION_HEADERS.has(protocolNumber(m.protocol)) && ruleFamilies(rule).includes(6)) {
    report(f("protocol"), "is an IPv6 extension header, which ip6tables cannot match as a protocol; add ip_version: 4 or drop it");
  }
  for (const k of ["src_ports", "dst_ports"] as const) {
    const v = k === "src_ports" ? m.srcPorts : m.dstPorts;
    if (v === undefined) continue;
    if (proto === undefined || !PORT_PROTOCOLS.has(proto)) {
      report(f(k), `ports are allowed only with protocol ${PORT_PROTOCOL_NAMES}`);
    }
    if (v.length === 0) report(f(k), "must not be an empty list");
    if (v.length > LIMITS.portsPerRule) report(f(k), `at most ${LIMITS.portsPerRule} entries`);
    v.forEach((r, i) => {
      if (!(Number.isInteger(r.first) && r.first >= 0 && r.first <= 65535 && Number.isInteger(r.last) && r.last <= 65535)) {
        report(`${f(k)}[${i}]`, "ports must be 0-65535");
      } else if (r.first > r.last) {
        report(`${f(k)}[${i}]`, `range ${r.first}:${r.last} must have N < M`);
      }
    });
  }
  const icmpProto = proto === 1 || proto === 58;
  if (m.icmpType !== undefined) {
    if (!icmpProto) report(f("icmp_type"), "allowed only with protocol icmp or icmpv6");
    if (!Number.isInteger(m.icmpType) || m.icmpType < 0 || m.icmpType > 254) report(f("icmp_type"), "must be 0-254 (255 is reserved)");
  }
  if (m.icmpCode !== undefined) {
    if (m.icmpType === undefined) report(f("icmp_code"), `allowed only together with ${prefix}icmp_type`);
    if (!Number.isInteger(m.icmpCode) || m.icmpCode < 0 || m.icmpCode > 255) report(f("icmp_code"), "must be 0-255");
  }
}

/** Lines a rule renders into (positive port lists are split into multiport chunks and multiplied). */
// Any single list within LIMITS.portsPerRule fits (512 ranges, 7 per line: 74 lines); products of two long lists do not.
const MAX_PORT_LINES = 80;

function portChunks(ps: { first: number; last: number }[] | undefined): number {
  return ps ? Math.max(1, chunkPorts(ps).length) : 1;
}

export function validateRule(report: Report, path: string, rule: Rule): void {
  if (portChunks(rule.match.srcPorts) * portChunks(rule.match.dstPorts) > MAX_PORT_LINES) {
    report(path, `src_ports x dst_ports would need more than ${MAX_PORT_LINES} iptables rules (15 ports per rule, a range counts 2); split this rule`);
  }
  if (rule.action !== "allow" && rule.action !== "deny") report(`${path}.action`, "must be allow or deny");
  if (rule.ipVersion !== undefined && rule.ipVersion !== 4 && rule.ipVersion !== 6) report(`${path}.ip_version`, "must be 4 or 6");
  validateMatch(report, `${path}.`, rule.match, rule);
  validateMatch(report, `${path}.!`, rule.negated, rule);
  const p = rule.match.protocol;
  if ((p === "icmp" || p === "1") && rule.ipVersion === 6) report(`${path}.protocol`, "icmp is IPv4; use icmpv6 with ip_version 6");
  if ((p === "icmpv6" || p === "58") && rule.ipVersion === 4) report(`${path}.protocol`, "icmpv6 is IPv6; use icmp with ip_version 4");
  if (ruleFamilies(rule).length === 0) {
    report(path, "mixes IPv4 and IPv6 (ip_version, CIDRs and protocol must agree on one family)");
  }
}

export function validateProfile(p: Profile, report: Report): void {
  checkId(report, "id", p.id);
  if (p.tags.length > LIMITS.tagsPerProfile) report("tags", `at most ${LIMITS.tagsPerProfile} tags`);
  p.tags.forEach((t, i) => checkId(report, `tags[${i}]`, t));
  for (const [dir, rules] of [["inbound_rules", p.inboundRules], ["outbound_rules", p.outboundRules]] as const) {
    if (rules.length > LIMITS.rulesPerDirection) report(dir, `at most ${LIMITS.rulesPerDirection} rules`);
    rules.forEach((r, i) => validateRule(report, `${dir}[${i}]`, r));
  }
  validateLabels(report, p.labels);
}

export function validateEndpoint(e: Endpoint, report: Report): void {
  checkId(report, "host", e.host, LIMITS.hostLength);
  checkId(report, "orchestrator", e.orchestrator);
  checkId(report, "workload", e.workload);
  checkId(report, "id", e.id);
  if (!INTERFACE_RE.test(e.name)) report("name", "interface name must be 1-15 characters of letters, digits, '_' and '-'");
  if (e.state !== "active" && e.state !== "inactive") report("state", "must be active or inactive");
  if (e.mac !== undefined && !MAC_RE.test(e.mac)) report("mac", "must be a MAC address like 02:00:00:00:00:01");
  for (const [field, nets, version] of [["ipv4_nets", e.ipv4Nets, 4], ["ipv6_nets", e.ipv6Nets, 6]] as const) {
    if (nets.length > LIMITS.netsPerEndpoint) report(field, `at most ${LIMITS.netsPerEndpoint} entries`);
    nets.forEach((n, i) => {
      const c = parseCidr(n);
      if (!c || c.version !== version) report(`${field}[${i}]`, `'${printable(n)}' is not an IPv${version} address`);
      else if (c.prefix !== (version === 4 ? 32 : 128)) report(`${field}[${i}]`, `must be a host route (/${version === 4 ? 32 : 128})`);
    });
  }
  if (e.network !== undefined) checkId(report, "network", e.network);
  const pairs = e.addressPairs ?? [];
  if (pairs.length > LIMITS.netsPerEndpoint) report("address_pairs", `at most ${LIMITS.netsPerEndpoint} entries`);
  const pairNets = new Set<string>();
  pairs.forEach((a, i) => {
    const c = parseCidr(a.net);
    // hash:net members must have a prefix of at least 1 (DESIGN §2.11).
    if (!c) report(`address_pairs[${i}].ip_address`, `'${printable(a.net)}' is not an IP address or CIDR`);
    else if (c.prefix === 0) report(`address_pairs[${i}].ip_address`, `a /0 pair cannot be programmed; give its two halves (${c.version === 4 ? "0.0.0.0/1 and 128.0.0.0/1" : "::/1 and 8000::/1"})`);
    if (a.mac !== undefined && !MAC_RE.test(a.mac)) report(`address_pairs[${i}].mac_address`, "must be a MAC address like 02:00:00:00:00:01");
    const key = `${a.net} ${a.mac ?? ""}`;
    if (pairNets.has(key)) report(`address_pairs[${i}]`, `duplicate pair '${printable(a.net)}'${a.mac ? ` with ${a.mac}` : ""}`);
    pairNets.add(key);
  });
  for (const [field, gw, version] of [["ipv4_gateway", e.ipv4Gateway, 4], ["ipv6_gateway", e.ipv6Gateway, 6]] as const) {
    if (gw === undefined) continue;
    const c = parseCidr(gw);
    if (!c || c.version !== version || c.prefix !== (version === 4 ? 32 : 128)) report(field, `must be an IPv${version} address`);
  }
  if (e.profileIds.length > LIMITS.profilesPerEndpoint) report("profile_ids", `at most ${LIMITS.profilesPerEndpoint} profiles`);
  const seen = new Set<string>();
  e.profileIds.forEach((p, i) => {
    checkId(report, `profile_ids[${i}]`, p);
    if (seen.has(p)) report(`profile_ids[${i}]`, `duplicate profile '${p}'`);
    seen.add(p);
  });
  validateLabels(report, e.labels);
}

function validateLabels(report: Report, map: Record<string, string>): void {
  const labels = Object.entries(map);
  if (labels.length > LIMITS.labelsPerObject) report("labels", `at most ${LIMITS.labelsPerObject} labels`);
  for (const [k, v] of labels) {
    if (!LABEL_KEY_RE.test(k)) report(`labels.${printable(k)}`, "label keys are 1-253 characters of letters, digits, '_', '.', '/' and '-'");
    else if (typeof v !== "string" || !LABEL_VALUE_RE.test(v)) report(`labels.${k}`, "label values are 0-63 characters of letters, digits, '_', '.' and '-'");
  }
}

/** Canonical CIDR text (host bits cleared, IPv6 compressed); input must be valid. */
export function canonicalCidr(text: string): string {
  const c = parseCidr(text);
  return c ? formatCidr(c) : text;
}

/** Quotes a hostile string for an error message: bounded, control chars escaped. */
export function printable(s: string): string {
  const cut = s.length > 64 ? `${s.slice(0, 64)}…` : s;
  return JSON.stringify(cut).slice(1, -1);
}
