// Documents as users write them (DESIGN §3.1, §3.2): YAML or JSON, one document, a
// list, or a YAML multi-document stream; Calico v1 spellings. This file turns
// them into model objects (structural checks: kinds, types, unknown keys) and
// back; validate.ts checks the values.
import { parseAllDocuments, stringify } from "yaml";
import { ValidationError, type ValidationIssue } from "./errors.js";
import { LIMITS } from "./limits.js";
import { ID_RE, canonicalCidr, printable, validateEndpoint, validateProfile } from "./validate.js";
import {
  endpointKeyString,
  type AddressPair, type Endpoint, type EndpointKey, type Match, type ModelObject, type PortRange, type Profile, type Rule,
} from "./types.js";

type Raw = Record<string, unknown>;

const MATCH_KEYS = [
  "protocol", "src_net", "dst_net", "src_tag", "dst_tag",
  "src_ports", "dst_ports", "icmp_type", "icmp_code",
] as const;
const RULE_KEYS = new Set<string>(["action", "ip_version", ...MATCH_KEYS, ...MATCH_KEYS.map((k) => `!${k}`)]);
const PROFILE_KEYS = new Set(["kind", "id", "tags", "inbound_rules", "outbound_rules", "labels"]);
const ENDPOINT_KEYS = new Set([
  "kind", "host", "orchestrator", "workload", "id", "name", "state", "mac",
  "ipv4_nets", "ipv6_nets", "ipv4_gateway", "ipv6_gateway", "profile_ids", "profile_id", "labels",
  "network", "address_pairs",
]);
const ADDRESS_PAIR_KEYS = new Set(["ip_address", "mac_address"]);

/** Splits a file's text into raw documents (YAML streams, lists, JSON). */
export function splitDocuments(text: string, source = "input"): unknown[] {
  if (text.length > 64 * 1024 * 1024) {
    throw new ValidationError([{ document: source, field: "", reason: "file larger than 64 MiB" }]);
  }
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  const out: unknown[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) {
    if (d.errors.length > 0) {
      const e = d.errors[0]!;
      throw new ValidationError([{ document: source, field: "", reason: `not valid YAML or JSON: ${e.message.split("\n")[0]}` }]);
    }
    const v = d.toJS({ maxAliasCount: 100 });
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) out.push(...v);
    else if (typeof v === "object" && Array.isArray((v as Raw).items) && Object.keys(v as Raw).every((k) => k === "items" || k === "kind")) {
      out.push(...((v as Raw).items as unknown[]));
    } else out.push(v);
  }
  if (out.length > LIMITS.documentsPerBatch) {
    throw new ValidationError([{ document: source, field: "", reason: `more than ${LIMITS.documentsPerBatch} documents` }]);
  }
  return out;
}

/** Parses and validates raw documents; throws one ValidationError listing every issue. */
export function parseDocuments(raws: unknown[]): ModelObject[] {
  const issues: ValidationIssue[] = [];
  const objects: ModelObject[] = [];
  const seen = new Map<string, string>();
  raws.forEach((raw, i) => {
    const r = parseDocument(raw, i + 1);
    issues.push(...r.issues);
    if (r.object) {
      const key = objectKey(r.object);
      const prev = seen.get(key);
      if (prev !== undefined) {
        issues.push({ document: describe(r.object), field: "", reason: `appears twice in one batch (also document ${prev})` });
      }
      seen.set(key, String(i + 1));
      objects.push(r.object);
    }
  });
  if (issues.length) throw new ValidationError(issues);
  return objects;
}

export function objectKey(o: ModelObject): string {
  return o.kind === "Profile" ? `profile:${o.profile.id}` : `endpoint:${endpointKeyString(o.endpoint)}`;
}

export function describe(o: ModelObject): string {
  return o.kind === "Profile" ? `Profile ${printable(o.profile.id)}` : `Endpoint ${printable(endpointKeyString(o.endpoint))}`;
}

/** Validates a model object that did not come from a document (e.g. the gRPC API). */
export function validateObject(o: ModelObject, name = describe(o)): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const report = (field: string, reason: string) => issues.push({ document: name, field, reason });
  if (o.kind === "Profile") validateProfile(o.profile, report);
  else validateEndpoint(o.endpoint, report);
  return issues;
}

/**
 * Identities only (what `delete -f` needs): kind plus id, or host/orchestrator/
 * workload/id. The rest of each document is ignored, so objects whose stored
 * form no longer passes today's validation can still be deleted by file.
 */
export function parseRefs(raws: unknown[]): ({ kind: "Profile"; id: string } | { kind: "Endpoint"; key: EndpointKey })[] {
  const issues: ValidationIssue[] = [];
  const refs: ({ kind: "Profile"; id: string } | { kind: "Endpoint"; key: EndpointKey })[] = [];
  raws.forEach((raw, i) => {
    const name = `document ${i + 1}`;
    const r = isObject(raw) ? raw : {};
    const fields = r.kind === "Profile" ? ["id"] : r.kind === "Endpoint" ? ["host", "orchestrator", "workload", "id"] : [];
    if (!fields.length) {
      issues.push({ document: name, field: "kind", reason: "must be Profile or Endpoint" });
      return;
    }
    const bad = fields.filter((f) => typeof r[f] !== "string" || !ID_RE.test(r[f] as string) || (r[f] as string).length > LIMITS.hostLength);
    for (const f of bad) issues.push({ document: name, field: f, reason: "is required: letters, digits, '_', '.' and '-'" });
    if (bad.length) return;
    if (r.kind === "Profile") refs.push({ kind: "Profile", id: r.id as string });
    else refs.push({ kind: "Endpoint", key: { host: r.host as string, orchestrator: r.orchestrator as string, workload: r.workload as string, id: r.id as string } });
  });
  if (issues.length) throw new ValidationError(issues);
  return refs;
}

export function parseDocument(raw: unknown, index: number): { object?: ModelObject; issues: ValidationIssue[] } {
  const issues: ValidationIssue[] = [];
  let name = `document ${index}`;
  const report = (field: string, reason: string) => issues.push({ document: name, field, reason });
  if (!isObject(raw)) {
    report("", "must be a mapping with a 'kind'");
    return { issues };
  }
  const kind = raw.kind;
  if (kind === "Profile") {
    if (typeof raw.id === "string") name = `Profile ${printable(raw.id)}`;
    const reader = new Reader(raw, "", report);
    reader.unknownKeys(PROFILE_KEYS);
    const profile: Profile = {
      id: reader.string("id", true) ?? "",
      tags: reader.stringList("tags") ?? [],
      inboundRules: reader.list("inbound_rules", (v, p) => parseRule(v, p, report)) ?? [],
      outboundRules: reader.list("outbound_rules", (v, p) => parseRule(v, p, report)) ?? [],
      labels: reader.stringMap("labels") ?? {},
    };
    if (issues.length) return { issues };
    validateProfile(profile, report);
    return issues.length ? { issues } : { object: { kind: "Profile", profile }, issues };
  }
  if (kind === "Endpoint") {
    const idParts = ["host", "orchestrator", "workload", "id"].map((k) => raw[k]);
    if (idParts.every((p) => typeof p === "string")) name = `Endpoint ${printable(idParts.join("/"))}`;
    const reader = new Reader(raw, "", report);
    reader.unknownKeys(ENDPOINT_KEYS);
    let profileIds = reader.stringList("profile_ids");
    const single = reader.string("profile_id");
    if (single !== undefined) {
      if (profileIds !== undefined) report("profile_id", "give profile_ids or profile_id, not both");
      profileIds = [single];
    }
    const endpoint: Endpoint = {
      host: reader.string("host", true) ?? "",
      orchestrator: reader.string("orchestrator", true) ?? "",
      workload: reader.string("workload", true) ?? "",
      id: reader.string("id", true) ?? "",
      name: reader.string("name", true) ?? "",
      state: (reader.string("state", true) ?? "") as Endpoint["state"],
      mac: reader.string("mac")?.toLowerCase(),
      ipv4Nets: (reader.stringList("ipv4_nets") ?? []).map(hostRoute(4)),
      ipv6Nets: (reader.stringList("ipv6_nets") ?? []).map(hostRoute(6)),
      ipv4Gateway: reader.string("ipv4_gateway"),
      ipv6Gateway: reader.string("ipv6_gateway"),
      profileIds: profileIds ?? [],
      labels: reader.stringMap("labels") ?? {},
    };
    const network = reader.string("network");
    if (network !== undefined) endpoint.network = network;
    const pairs = reader.list("address_pairs", (v, p) => parseAddressPair(v, p, report));
    if (pairs?.length) endpoint.addressPairs = pairs;
    if (endpoint.mac === undefined) delete endpoint.mac;
    if (endpoint.ipv4Gateway === undefined) delete endpoint.ipv4Gateway;
    if (endpoint.ipv6Gateway === undefined) delete endpoint.ipv6Gateway;
    if (issues.length) return { issues };
    validateEndpoint(endpoint, report);
    return issues.length ? { issues } : { object: { kind: "Endpoint", endpoint }, issues };
  }
  report("kind", kind === undefined ? "is required (Profile or Endpoint)" : `'${printable(String(kind))}' is not Profile or Endpoint`);
  return { issues };
}

/** `{ip_address, mac_address?}`, Neutron's spelling; a bare address is a host route. */
function parseAddressPair(raw: unknown, path: string, report: (f: string, r: string) => void): AddressPair | undefined {
  if (!isObject(raw)) {
    report(path, "must be a mapping with ip_address (and optionally mac_address)");
    return undefined;
  }
  const reader = new Reader(raw, `${path}.`, report);
  reader.unknownKeys(ADDRESS_PAIR_KEYS);
  const ip = reader.string("ip_address", true);
  const mac = reader.string("mac_address")?.toLowerCase();
  if (ip === undefined) return undefined;
  // The version is only known once parsed; canonicalCidr leaves invalid text alone for validation to report.
  const net = ip.includes("/") ? canonicalCidr(ip) : canonicalCidr(`${ip}/${ip.includes(":") ? 128 : 32}`);
  return mac === undefined ? { net } : { net, mac };
}

/** A bare address in ipv4_nets/ipv6_nets means a host route. */
function hostRoute(version: 4 | 6): (s: string) => string {
  return (s) => (s.includes("/") ? canonicalCidr(s) : canonicalCidr(`${s}/${version === 4 ? 32 : 128}`));
}

function parseRule(raw: unknown, path: string, report: (f: string, r: string) => void): Rule | undefined {
  if (!isObject(raw)) {
    report(path, "must be a mapping");
    return undefined;
  }
  const reader = new Reader(raw, `${path}.`, report);
  reader.unknownKeys(RULE_KEYS);
  const action = reader.string("action") ?? "allow";
  const ipv = reader.integer("ip_version");
  const rule: Rule = {
    action: action as Rule["action"],
    match: readMatch(reader, ""),
    negated: readMatch(reader, "!"),
  };
  if (ipv !== undefined) rule.ipVersion = ipv as 4 | 6;
  return rule;
}

function readMatch(reader: Reader, neg: "" | "!"): Match {
  const m: Match = {};
  const proto = reader.scalar(`${neg}protocol`);
  if (proto !== undefined) m.protocol = String(proto).toLowerCase();
  const srcNet = reader.string(`${neg}src_net`);
  if (srcNet !== undefined) m.srcNet = canonicalCidr(srcNet);
  const dstNet = reader.string(`${neg}dst_net`);
  if (dstNet !== undefined) m.dstNet = canonicalCidr(dstNet);
  const srcTag = reader.string(`${neg}src_tag`);
  if (srcTag !== undefined) m.srcTag = srcTag;
  const dstTag = reader.string(`${neg}dst_tag`);
  if (dstTag !== undefined) m.dstTag = dstTag;
  const sp = reader.ports(`${neg}src_ports`);
  if (sp !== undefined) m.srcPorts = sp;
  const dp = reader.ports(`${neg}dst_ports`);
  if (dp !== undefined) m.dstPorts = dp;
  const t = reader.integer(`${neg}icmp_type`);
  if (t !== undefined) m.icmpType = t;
  const c = reader.integer(`${neg}icmp_code`);
  if (c !== undefined) m.icmpCode = c;
  return m;
}

function isObject(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Typed field access that reports wrong types with the field's path. */
class Reader {
  constructor(private raw: Raw, private path: string, private report: (f: string, r: string) => void) {}

  unknownKeys(allowed: Set<string>): void {
    for (const k of Object.keys(this.raw)) {
      if (!allowed.has(k)) this.report(`${this.path}${printable(k)}`, "unknown field");
    }
  }
  private get(k: string, required = false): unknown {
    const v = this.raw[k];
    if ((v === undefined || v === null) && required) this.report(`${this.path}${k}`, "is required");
    return v ?? undefined;
  }
  string(k: string, required = false): string | undefined {
    const v = this.get(k, required);
    if (v === undefined) return undefined;
    if (typeof v !== "string") {
      this.report(`${this.path}${k}`, "must be a string");
      return undefined;
    }
    return v;
  }
  scalar(k: string): string | number | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v === "number" && Number.isInteger(v)) return v;
    if (typeof v !== "string") {
      this.report(`${this.path}${k}`, "must be a string or an integer");
      return undefined;
    }
    return v;
  }
  integer(k: string): number | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.report(`${this.path}${k}`, "must be an integer");
      return undefined;
    }
    return v;
  }
  list<T>(k: string, each: (v: unknown, path: string) => T | undefined): T[] | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.report(`${this.path}${k}`, "must be a list");
      return undefined;
    }
    const out: T[] = [];
    v.forEach((item, i) => {
      const r = each(item, `${this.path}${k}[${i}]`);
      if (r !== undefined) out.push(r);
    });
    return out;
  }
  stringList(k: string): string[] | undefined {
    return this.list(k, (v, p) => {
      if (typeof v !== "string") {
        this.report(p, "must be a string");
        return undefined;
      }
      return v;
    });
  }
  stringMap(k: string): Record<string, string> | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (!isObject(v)) {
      this.report(`${this.path}${k}`, "must be a mapping of strings");
      return undefined;
    }
    const out: Record<string, string> = {};
    for (const [key, val] of Object.entries(v)) {
      if (typeof val !== "string") this.report(`${this.path}${k}.${printable(key)}`, "must be a string");
      else out[key] = val;
    }
    return out;
  }
  /** Ports: integers, or "N" / "N:M" strings with N < M. */
  ports(k: string): PortRange[] | undefined {
    return this.list(k, (v, p) => {
      if (typeof v === "number" && Number.isInteger(v)) return { first: v, last: v };
      if (typeof v === "string") {
        const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(v);
        if (m) {
          const first = Number(m[1]);
          const last = m[2] === undefined ? first : Number(m[2]);
          if (m[2] !== undefined && first >= last) {
            this.report(p, `range '${v}' must have N < M`);
            return undefined;
          }
          return { first, last };
        }
      }
      this.report(p, `'${printable(String(v))}' is not a port (0-65535) or a range "N:M"`);
      return undefined;
    });
  }
}

// ---------------------------------------------------------------------------
// Model -> document (what `get -o yaml|json` prints and what etcd stores).

function portsDoc(ps: PortRange[]): (number | string)[] {
  return ps.map((p) => (p.first === p.last ? p.first : `${p.first}:${p.last}`));
}

function matchDoc(m: Match, neg: "" | "!", out: Raw): void {
  if (m.protocol !== undefined) out[`${neg}protocol`] = /^\d+$/.test(m.protocol) ? Number(m.protocol) : m.protocol;
  if (m.srcNet !== undefined) out[`${neg}src_net`] = m.srcNet;
  if (m.srcTag !== undefined) out[`${neg}src_tag`] = m.srcTag;
  if (m.srcPorts !== undefined) out[`${neg}src_ports`] = portsDoc(m.srcPorts);
  if (m.dstNet !== undefined) out[`${neg}dst_net`] = m.dstNet;
  if (m.dstTag !== undefined) out[`${neg}dst_tag`] = m.dstTag;
  if (m.dstPorts !== undefined) out[`${neg}dst_ports`] = portsDoc(m.dstPorts);
  if (m.icmpType !== undefined) out[`${neg}icmp_type`] = m.icmpType;
  if (m.icmpCode !== undefined) out[`${neg}icmp_code`] = m.icmpCode;
}

export function ruleToDocument(r: Rule): Raw {
  const out: Raw = { action: r.action };
  if (r.ipVersion !== undefined) out.ip_version = r.ipVersion;
  matchDoc(r.match, "", out);
  matchDoc(r.negated, "!", out);
  return out;
}

export function toDocument(o: ModelObject): Raw {
  if (o.kind === "Profile") {
    const p = o.profile;
    const doc: Raw = {
      kind: "Profile",
      id: p.id,
      tags: p.tags,
      inbound_rules: p.inboundRules.map(ruleToDocument),
      outbound_rules: p.outboundRules.map(ruleToDocument),
    };
    if (Object.keys(p.labels).length) doc.labels = p.labels;
    return doc;
  }
  const e = o.endpoint;
  const out: Raw = {
    kind: "Endpoint", host: e.host, orchestrator: e.orchestrator, workload: e.workload, id: e.id,
    name: e.name, state: e.state,
  };
  if (e.mac !== undefined) out.mac = e.mac;
  out.ipv4_nets = e.ipv4Nets;
  out.ipv6_nets = e.ipv6Nets;
  if (e.ipv4Gateway !== undefined) out.ipv4_gateway = e.ipv4Gateway;
  if (e.ipv6Gateway !== undefined) out.ipv6_gateway = e.ipv6Gateway;
  out.profile_ids = e.profileIds;
  if (Object.keys(e.labels).length) out.labels = e.labels;
  if (e.network !== undefined) out.network = e.network;
  if (e.addressPairs?.length) out.address_pairs = e.addressPairs.map((a) => (a.mac === undefined ? { ip_address: a.net } : { ip_address: a.net, mac_address: a.mac }));
  return out;
}

export function toYaml(docs: Raw[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join("---\n");
}

export function parseEndpointKey(s: string): EndpointKey | undefined {
  const parts = s.split("/");
  if (parts.length !== 4 || parts.some((p) => p.length === 0)) return undefined;
  const [host, orchestrator, workload, id] = parts as [string, string, string, string];
  return { host, orchestrator, workload, id };
}
