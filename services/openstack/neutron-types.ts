// Neutron API objects as the OpenStack adapter reads them: the bodies of
// GET /v2.0/security-groups, GET /v2.0/ports and GET /v2.0/address-groups,
// plus runtime shape checks of the parsed JSON.
//
// The shape checks only make sure every field the translator reads has the
// type Neutron gives it; they never judge values (translate.ts does that,
// with reasons in Palisade's terms). Fields the translator does not read
// (created_at, tags, standard_attr_id, binding:vif_details, ...)
// are accepted whatever they hold and are not kept: Neutron adds fields from
// release to release, and a newer cloud must not break the adapter.
//
// A malformed file gives a TranslateError that lists every problem, each
// naming the object ("security group <id>", "port <id>", or its index when
// the id itself is missing) and the field path; the checks never throw
// anything else, whatever JSON they are handed.
import { printable } from "../model/index.js";

export type NeutronDirection = "ingress" | "egress";
export type NeutronEthertype = "IPv4" | "IPv6";

/** One element of a group's `security_group_rules`. */
export interface NeutronSecurityGroupRule {
  id: string;
  security_group_id?: string;
  direction: NeutronDirection;
  ethertype: NeutronEthertype;
  /** Name ("tcp", "ipv6-icmp", "any", ...), decimal string or number 0-255, or null (any). */
  protocol?: string | number | null;
  /** Port protocols: first destination port. ICMP: the ICMP type. */
  port_range_min?: number | null;
  /** Port protocols: last destination port. ICMP: the ICMP code. */
  port_range_max?: number | null;
  remote_ip_prefix?: string | null;
  remote_group_id?: string | null;
  remote_address_group_id?: string | null;
  description?: string | null;
}

export interface NeutronSecurityGroup {
  id: string;
  name?: string;
  description?: string;
  project_id?: string;
  /** false: a stateless group (Neutron "stateful-security-group" extension). */
  stateful?: boolean;
  security_group_rules: NeutronSecurityGroupRule[];
  /** Bumped by every change of the group, its rules' creation and deletion included. */
  revision_number?: number;
  updated_at?: string;
}

export interface NeutronFixedIp {
  ip_address: string;
  subnet_id?: string;
}

export interface NeutronAllowedAddressPair {
  /** An address or a CIDR. */
  ip_address: string;
  /** Neutron fills in the port's MAC when the pair was created without one. */
  mac_address?: string;
}

export interface NeutronPort {
  id: string;
  name?: string;
  network_id?: string;
  project_id?: string;
  mac_address: string;
  admin_state_up: boolean;
  /** Operational status (ACTIVE, DOWN, BUILD, ...); informational only. */
  status?: string;
  /** "compute:<zone>", "network:dhcp", "network:router_interface", "" ... */
  device_owner: string;
  /** The instance id for compute ports. */
  device_id: string;
  /** Admin-only field: absent when the ports were listed without admin rights; "" when unbound. */
  "binding:host_id"?: string | null;
  /** Admin-only: "binding_failed" and "unbound" mean no host is set up to serve the port. */
  "binding:vif_type"?: string | null;
  /** Admin-only: Nova puts {"migrating_to": HOST} here during a live migration. */
  "binding:profile"?: Record<string, unknown> | null;
  /** Neutron's revision of the port (standard-attr-revisions); bumped by every change. */
  revision_number?: number;
  /** "2026-11-29T23:31:09Z" (standard-attr-timestamp; one-second resolution). */
  updated_at?: string;
  fixed_ips: NeutronFixedIp[];
  allowed_address_pairs?: NeutronAllowedAddressPair[];
  /** Absent when the port-security extension is off, which means enabled. */
  port_security_enabled?: boolean | null;
  /** Group ids, in the port's order. */
  security_groups?: string[];
}

export interface NeutronAddressGroup {
  id: string;
  name?: string;
  /** CIDRs ("198.18.0.0/24", "2001:db8::1/128"). */
  addresses: string[];
}

// ---------------------------------------------------------------------------
// Errors

export interface TranslateIssue {
  /** "security group <id>", "security group <id> rule <id>", "port <id>", "address group <id>", or the file. */
  object: string;
  /** Neutron field path within the object: "security_group_rules[1].direction", "protocol". */
  field: string;
  reason: string;
}

/** The Neutron input cannot be translated; nothing should be written. `issues` lists every problem. */
export class TranslateError extends Error {
  readonly issues: TranslateIssue[];
  constructor(issues: TranslateIssue[]) {
    const n = issues.length;
    super(`Neutron input cannot be translated (${n} problem${n === 1 ? "" : "s"}):\n${issues.map((i) => `  ${formatTranslateIssue(i)}`).join("\n")}`);
    this.name = "TranslateError";
    this.issues = issues;
  }
}

export function formatTranslateIssue(i: TranslateIssue): string {
  return i.field ? `${i.object}: ${i.field}: ${i.reason}` : `${i.object}: ${i.reason}`;
}

// ---------------------------------------------------------------------------
// Shape checks

type Raw = Record<string, unknown>;

function isObject(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `the string "${printable(v)}"`;
  return `${typeof v} ${printable(String(v))}`;
}

/** Typed access to one JSON object's fields; wrong types are reported with the field's path. */
class Fields {
  constructor(
    private readonly raw: Raw,
    private readonly object: string,
    private readonly prefix: string,
    private readonly issues: TranslateIssue[],
  ) {}

  report(k: string, reason: string): void {
    this.issues.push({ object: this.object, field: `${this.prefix}${k}`, reason });
  }
  /** A required non-empty string. */
  id(k: string): string | undefined {
    const v = this.raw[k];
    if (typeof v === "string" && v.length > 0) return v;
    this.report(k, v === undefined || v === null ? "is required (a non-empty string)" : `must be a non-empty string, not ${typeName(v)}`);
    return undefined;
  }
  /** An optional string; null and absent both give undefined. */
  optString(k: string): string | undefined {
    const v = this.raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") return v;
    this.report(k, `must be a string or null, not ${typeName(v)}`);
    return undefined;
  }
  /** Like optString, but keeps null apart from absent (binding:host_id). */
  stringOrNull(k: string): string | null | undefined {
    const v = this.raw[k];
    if (v === undefined) return undefined;
    if (v === null || typeof v === "string") return v;
    this.report(k, `must be a string or null, not ${typeName(v)}`);
    return undefined;
  }
  requiredString(k: string): string | undefined {
    const v = this.raw[k];
    if (typeof v === "string") return v;
    this.report(k, v === undefined || v === null ? "is required (a string)" : `must be a string, not ${typeName(v)}`);
    return undefined;
  }
  bool(k: string, required: boolean): boolean | undefined {
    const v = this.raw[k];
    if (v === undefined || v === null) {
      if (required) this.report(k, "is required (true or false)");
      return undefined;
    }
    if (typeof v === "boolean") return v;
    this.report(k, `must be true or false, not ${typeName(v)}`);
    return undefined;
  }
  intOrNull(k: string): number | null | undefined {
    const v = this.raw[k];
    if (v === undefined || v === null) return null;
    if (typeof v === "number" && Number.isInteger(v)) return v;
    this.report(k, `must be an integer or null, not ${typeName(v)}`);
    return undefined;
  }
  oneOf<T extends string>(k: string, values: readonly T[], caseInsensitive = false): T | undefined {
    const v = this.raw[k];
    if (typeof v === "string") {
      const hit = values.find((x) => (caseInsensitive ? x.toLowerCase() === v.toLowerCase() : x === v));
      if (hit !== undefined) return hit;
    }
    const want = values.map((x) => `'${x}'`).join(" or ");
    this.report(k, v === undefined || v === null ? `is required (${want})` : `must be ${want}, not ${typeName(v)}`);
    return undefined;
  }
  /** A list; absent/null gives `absent` (undefined = required and missing or wrong). */
  list(k: string, required: boolean): unknown[] | undefined | "absent" {
    const v = this.raw[k];
    if (v === undefined || v === null) {
      if (required) {
        this.report(k, "is required (a list)");
        return undefined;
      }
      return "absent";
    }
    if (Array.isArray(v)) return v;
    this.report(k, `must be a list, not ${typeName(v)}`);
    return undefined;
  }
  has(k: string): boolean {
    return this.raw[k] !== undefined;
  }
}

/** Names the i-th element of a list by its id when it has a usable one. */
function objectName(kind: string, listKey: string, i: number, raw: Raw): string {
  const id = raw.id;
  return typeof id === "string" && id.length > 0 ? `${kind} ${printable(id)}` : `${listKey}[${i}]`;
}

const FILE_HINTS: Record<string, string> = {
  security_groups: "a security groups file (GET /v2.0/security-groups)",
  ports: "a ports file (GET /v2.0/ports)",
  address_groups: "an address groups file (GET /v2.0/address-groups)",
  security_group: "a single security group (GET /v2.0/security-groups/{id}); give the list",
  port: "a single port (GET /v2.0/ports/{id}); give the list",
  address_group: "a single address group (GET /v2.0/address-groups/{id}); give the list",
  security_group_rules: "a security group rules list (GET /v2.0/security-group-rules); give the groups, which embed their rules",
};

/** Unwraps {"<key>": [...]}, reporting what the file looks like when it is something else. */
function listBody(json: unknown, key: string, file: string, path: string, issues: TranslateIssue[]): unknown[] | undefined {
  const expected = `expected the body of GET ${path}: {"${key}": [...]}`;
  if (!isObject(json)) {
    issues.push({ object: file, field: "", reason: `must be a JSON object, not ${typeName(json)}; ${expected}` });
    return undefined;
  }
  const v = json[key];
  if (v === undefined || v === null) {
    const other = Object.keys(FILE_HINTS).find((k) => k !== key && json[k] !== undefined);
    const hint = other ? ` (this looks like ${FILE_HINTS[other]})` : "";
    issues.push({ object: file, field: key, reason: `is required; ${expected}${hint}` });
    return undefined;
  }
  if (!Array.isArray(v)) {
    issues.push({ object: file, field: key, reason: `must be a list, not ${typeName(v)}` });
    return undefined;
  }
  // One page of a paginated listing (Neutron's pagination_max_limit caps a
  // plain GET; or the request had limit=): a sync from it would take every
  // object on the other pages for deleted. Refused, whatever else it holds.
  const links = json[`${key}_links`];
  if (Array.isArray(links) && links.some((l) => isObject(l) && l.rel === "next")) {
    issues.push({
      object: file, field: `${key}_links`,
      reason: `has a "next" link: this is one page of a paginated listing, and a sync from it would delete everything on the other pages; save the complete listing (palisade-openstack fetch --neutron-url URL … follows the pages)`,
    });
    return undefined;
  }
  return v;
}

function done<T>(issues: TranslateIssue[], value: T): T {
  if (issues.length) throw new TranslateError(issues);
  return value;
}

function parseRule(raw: unknown, i: number, object: string, issues: TranslateIssue[]): NeutronSecurityGroupRule | undefined {
  const prefix = `security_group_rules[${i}].`;
  if (!isObject(raw)) {
    issues.push({ object, field: `security_group_rules[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
    return undefined;
  }
  const before = issues.length;
  const f = new Fields(raw, object, prefix, issues);
  const id = f.id("id");
  const direction = f.oneOf("direction", ["ingress", "egress"] as const);
  // Neutron's own converter takes the ethertype case-insensitively.
  const ethertype = f.oneOf("ethertype", ["IPv4", "IPv6"] as const, true);
  let protocol: string | number | null = null;
  const p = raw.protocol;
  if (typeof p === "string" || p === null || p === undefined) protocol = p ?? null;
  else if (typeof p === "number" && Number.isInteger(p)) protocol = p;
  else f.report("protocol", `must be a protocol name, a number or null, not ${typeName(p)}`);
  const rule: NeutronSecurityGroupRule = {
    id: id ?? "",
    direction: direction ?? "ingress",
    ethertype: ethertype ?? "IPv4",
    protocol,
    port_range_min: f.intOrNull("port_range_min"),
    port_range_max: f.intOrNull("port_range_max"),
    remote_ip_prefix: f.optString("remote_ip_prefix") ?? null,
    remote_group_id: f.optString("remote_group_id") ?? null,
    remote_address_group_id: f.optString("remote_address_group_id") ?? null,
  };
  const sg = f.optString("security_group_id");
  if (sg !== undefined) rule.security_group_id = sg;
  const description = f.optString("description");
  if (description !== undefined) rule.description = description;
  return issues.length === before ? rule : undefined;
}

/** Validates the shape of {"security_groups": [...]} (GET /v2.0/security-groups). */
export function parseSecurityGroupsFile(json: unknown): NeutronSecurityGroup[] {
  const issues: TranslateIssue[] = [];
  const list = listBody(json, "security_groups", "security groups file", "/v2.0/security-groups", issues);
  const out: NeutronSecurityGroup[] = [];
  list?.forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ object: "security groups file", field: `security_groups[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const object = objectName("security group", "security_groups", i, raw);
    const f = new Fields(raw, object, "", issues);
    const before = issues.length;
    const id = f.id("id");
    const name = f.optString("name");
    const description = f.optString("description");
    const project = f.optString("project_id") ?? f.optString("tenant_id");
    const stateful = f.bool("stateful", false);
    const revisionNumber = f.intOrNull("revision_number");
    const updatedAt = f.optString("updated_at");
    const rawRules = f.list("security_group_rules", true);
    const rules: NeutronSecurityGroupRule[] = [];
    if (Array.isArray(rawRules)) {
      rawRules.forEach((r, j) => {
        const rule = parseRule(r, j, object, issues);
        if (rule) rules.push(rule);
      });
    }
    if (issues.length !== before || id === undefined) return;
    const g: NeutronSecurityGroup = { id, security_group_rules: rules };
    if (name !== undefined) g.name = name;
    if (description !== undefined) g.description = description;
    if (project !== undefined) g.project_id = project;
    if (stateful !== undefined) g.stateful = stateful;
    if (typeof revisionNumber === "number") g.revision_number = revisionNumber;
    if (updatedAt !== undefined) g.updated_at = updatedAt;
    out.push(g);
  });
  return done(issues, out);
}

/** Validates the shape of {"ports": [...]} (GET /v2.0/ports). */
export function parsePortsFile(json: unknown): NeutronPort[] {
  const issues: TranslateIssue[] = [];
  const list = listBody(json, "ports", "ports file", "/v2.0/ports", issues);
  const out: NeutronPort[] = [];
  list?.forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ object: "ports file", field: `ports[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const object = objectName("port", "ports", i, raw);
    const f = new Fields(raw, object, "", issues);
    const before = issues.length;
    const id = f.id("id");
    const name = f.optString("name");
    const network = f.optString("network_id");
    const project = f.optString("project_id") ?? f.optString("tenant_id");
    const mac = f.requiredString("mac_address");
    const admin = f.bool("admin_state_up", true);
    const status = f.optString("status");
    // Neutron gives "" for a port with no owner or device; null is read the same way.
    const owner = f.optString("device_owner") ?? "";
    const device = f.optString("device_id") ?? "";
    const host = f.stringOrNull("binding:host_id");
    const vifType = f.optString("binding:vif_type");
    const rawProfile = f.has("binding:profile") ? (raw as Raw)["binding:profile"] : undefined;
    // binding:profile is free-form (Nova's migrating_to is all we read); anything not an object is ignored.
    const bindingProfile = isObject(rawProfile) ? rawProfile : undefined;
    const revisionNumber = f.intOrNull("revision_number");
    const updatedAt = f.optString("updated_at");
    const portSecurity = f.bool("port_security_enabled", false);

    const fixedIps: NeutronFixedIp[] = [];
    const rawFixed = f.list("fixed_ips", false);
    if (Array.isArray(rawFixed)) {
      rawFixed.forEach((x, j) => {
        if (!isObject(x)) {
          f.report(`fixed_ips[${j}]`, `must be an object, not ${typeName(x)}`);
          return;
        }
        const g = new Fields(x, object, `fixed_ips[${j}].`, issues);
        const ip = g.requiredString("ip_address");
        const subnet = g.optString("subnet_id");
        if (ip === undefined) return;
        fixedIps.push(subnet === undefined ? { ip_address: ip } : { ip_address: ip, subnet_id: subnet });
      });
    }
    let pairs: NeutronAllowedAddressPair[] | undefined;
    const rawPairs = f.list("allowed_address_pairs", false);
    if (Array.isArray(rawPairs)) {
      pairs = [];
      rawPairs.forEach((x, j) => {
        if (!isObject(x)) {
          f.report(`allowed_address_pairs[${j}]`, `must be an object, not ${typeName(x)}`);
          return;
        }
        const g = new Fields(x, object, `allowed_address_pairs[${j}].`, issues);
        const ip = g.requiredString("ip_address");
        const pairMac = g.optString("mac_address");
        if (ip === undefined) return;
        pairs!.push(pairMac === undefined ? { ip_address: ip } : { ip_address: ip, mac_address: pairMac });
      });
    }
    let groups: string[] | undefined;
    const rawGroups = f.list("security_groups", false);
    if (Array.isArray(rawGroups)) {
      groups = [];
      rawGroups.forEach((x, j) => {
        if (typeof x === "string" && x.length > 0) groups!.push(x);
        else f.report(`security_groups[${j}]`, `must be a security group id (a non-empty string), not ${typeName(x)}`);
      });
    }
    if (issues.length !== before || id === undefined || mac === undefined || admin === undefined) return;
    const port: NeutronPort = {
      id, mac_address: mac, admin_state_up: admin, device_owner: owner, device_id: device, fixed_ips: fixedIps,
    };
    if (name !== undefined) port.name = name;
    if (network !== undefined) port.network_id = network;
    if (project !== undefined) port.project_id = project;
    if (status !== undefined) port.status = status;
    if (f.has("binding:host_id")) port["binding:host_id"] = host ?? null;
    if (vifType !== undefined) port["binding:vif_type"] = vifType;
    if (bindingProfile !== undefined) port["binding:profile"] = bindingProfile;
    if (typeof revisionNumber === "number") port.revision_number = revisionNumber;
    if (updatedAt !== undefined) port.updated_at = updatedAt;
    if (pairs !== undefined) port.allowed_address_pairs = pairs;
    if (portSecurity !== undefined) port.port_security_enabled = portSecurity;
    if (groups !== undefined) port.security_groups = groups;
    out.push(port);
  });
  return done(issues, out);
}

/** Validates the shape of {"address_groups": [...]} (GET /v2.0/address-groups). */
export function parseAddressGroupsFile(json: unknown): NeutronAddressGroup[] {
  const issues: TranslateIssue[] = [];
  const list = listBody(json, "address_groups", "address groups file", "/v2.0/address-groups", issues);
  const out: NeutronAddressGroup[] = [];
  list?.forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ object: "address groups file", field: `address_groups[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const object = objectName("address group", "address_groups", i, raw);
    const f = new Fields(raw, object, "", issues);
    const before = issues.length;
    const id = f.id("id");
    const name = f.optString("name");
    const addresses: string[] = [];
    const rawAddresses = f.list("addresses", true);
    if (Array.isArray(rawAddresses)) {
      rawAddresses.forEach((a, j) => {
        if (typeof a === "string") addresses.push(a);
        else f.report(`addresses[${j}]`, `must be a CIDR string, not ${typeName(a)}`);
      });
    }
    if (issues.length !== before || id === undefined) return;
    out.push(name === undefined ? { id, addresses } : { id, name, addresses });
  });
  return done(issues, out);
}

/** One element of GET /v2.0/ports/{id}/bindings (the port-bindings extension). */
export interface NeutronBinding {
  host: string;
  /** "ACTIVE" (the port's binding:host_id) or "INACTIVE" (a live migration's other end). */
  status: string;
  /** "binding_failed": no mechanism driver could bind there; "unbound": the source after activation. */
  vif_type?: string;
}

/** Validates {"bindings": [...]} (GET /v2.0/ports/{id}/bindings); `port` names the object in messages. */
export function parseBindings(json: unknown, port: string): NeutronBinding[] {
  const issues: TranslateIssue[] = [];
  const list = listBody(json, "bindings", `bindings of port ${printable(port)}`, `/v2.0/ports/${printable(port)}/bindings`, issues);
  const out: NeutronBinding[] = [];
  list?.forEach((raw, i) => {
    const object = `port ${printable(port)} binding ${i}`;
    if (!isObject(raw)) {
      issues.push({ object, field: "", reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const f = new Fields(raw, object, "", issues);
    const before = issues.length;
    const host = f.id("host");
    const status = f.id("status");
    const vif = f.optString("vif_type");
    if (issues.length !== before || host === undefined || status === undefined) return;
    out.push(vif === undefined ? { host, status } : { host, status, vif_type: vif });
  });
  return done(issues, out);
}

/** What a change feed reads per object: its id and Neutron's revision_number. */
export interface NeutronRevision {
  id: string;
  revision_number: number;
}

/**
 * Validates {"<key>": [{"id", "revision_number"}, ...]} (a listing with
 * fields=id&fields=revision_number). revision_number is required: without
 * the standard-attr-revisions extension there is nothing to compare.
 */
export function parseRevisions(json: unknown, key: "ports" | "security_groups"): NeutronRevision[] {
  const issues: TranslateIssue[] = [];
  const list = listBody(json, key, `${key} revisions`, `/v2.0/${key.replace("_", "-")}`, issues);
  const out: NeutronRevision[] = [];
  list?.forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ object: `${key} revisions`, field: `${key}[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const f = new Fields(raw, objectName(key === "ports" ? "port" : "security group", key, i, raw), "", issues);
    const id = f.id("id");
    const rev = (raw as Raw).revision_number;
    if (typeof rev !== "number" || !Number.isSafeInteger(rev)) {
      f.report("revision_number", "is required (an integer): Neutron's standard-attr-revisions extension must be on for a change feed");
      return;
    }
    if (id !== undefined) out.push({ id, revision_number: rev });
  });
  return done(issues, out);
}
