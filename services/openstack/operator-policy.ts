// The operator tier (DESIGN §11.12): profiles the cloud's operator defines
// in a file given to `palisade-openstack --operator-policy`, placed before a
// port's security groups (their deny cannot be overridden by a tenant's
// allow) or after them (they decide only what no group decided), for every
// port, by project, or by network. Pure: text in, a checked policy out.
//
// File (YAML or JSON — JSON is YAML; the model already depends on a YAML
// parser):
//
//   operator_profiles:
//     - id: openstack-operator-no-smtp        # must start with OPERATOR_PREFIX
//       placement: before                      # before | after
//       select: all                            # or {projects: [...], networks: [...]}
//       outbound_rules:                        # a Palisade profile body (DESIGN §2, §3.1)
//         - {action: deny, protocol: tcp, dst_ports: [25]}
//
// Each entry is a Palisade profile body — id, tags, inbound_rules,
// outbound_rules — checked by the model's own document parser and
// validation (parseDocument), plus `placement` and `select`. The adapter
// adds its owner label and a placement label; `labels` in the file is
// refused (the adapter owns them). Selection: `select: all`, or a mapping
// with `projects` and/or `networks` (non-empty lists of Neutron ids); with
// both, a port must be in one of the projects *and* on one of the networks.
// Ids and tags must start with OPERATOR_PREFIX: a security group's profile id
// and tag are its UUID, so neither can collide, and an operator tag can never
// make ports members of a tenant's group.
//
// A bad file is refused whole (OperatorPolicyError, every problem named by
// its entry): nothing of it is used.
import { parseDocument as parseYaml } from "yaml";
import { LIMITS, idProblem, parseDocument, printable, type Profile, type ValidationIssue } from "../model/index.js";
import type { NeutronPort } from "./neutron-types.js";

export const OPERATOR_PREFIX = "openstack-operator-";
/** Set on an operator profile: where it is placed ("before" or "after" the groups). */
export const PLACEMENT_LABEL = "palisade.io/openstack-placement";

export type Placement = "before" | "after";

export interface OperatorProfile {
  /** Id, tags and rules from the file; labels are set by translate(). */
  profile: Profile;
  placement: Placement;
  /** Absent: every project. */
  projects?: string[];
  /** Absent: every network. */
  networks?: string[];
}

export interface OperatorPolicy {
  /** In file order: a port's operator profiles keep it. */
  profiles: OperatorProfile[];
}

export const EMPTY_OPERATOR_POLICY: OperatorPolicy = { profiles: [] };

export class OperatorPolicyError extends Error {
  constructor(readonly source: string, readonly issues: ValidationIssue[]) {
    super(`${source}: ${issues.length} problem(s) in the operator policy, none of it used: ${formatOperatorIssue(issues[0]!)}`);
    this.name = "OperatorPolicyError";
  }
}

export function formatOperatorIssue(i: ValidationIssue): string {
  return i.field ? `${i.document}: ${i.field}: ${i.reason}` : `${i.document}: ${i.reason}`;
}

const ENTRY_KEYS = new Set(["id", "placement", "select", "tags", "inbound_rules", "outbound_rules"]);
const SELECT_KEYS = new Set(["projects", "networks"]);
/** At most this many operator profiles (each is a profile chain on every selected port). */
export const MAX_OPERATOR_PROFILES = 64;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses the text of an operator policy file (YAML or JSON); throws OperatorPolicyError. */
export function parseOperatorPolicyText(text: string, source: string): OperatorPolicy {
  const doc = parseYaml(text, { uniqueKeys: true });
  if (doc.errors.length) {
    throw new OperatorPolicyError(source, [{ document: "file", field: "", reason: `not valid YAML or JSON: ${doc.errors[0]!.message.split("\n")[0]}` }]);
  }
  return parseOperatorPolicy(doc.toJS({ maxAliasCount: 100 }), source);
}

/** Checks a parsed operator policy document; throws OperatorPolicyError listing every problem. */
export function parseOperatorPolicy(raw: unknown, source = "operator policy"): OperatorPolicy {
  const issues: ValidationIssue[] = [];
  const top = (field: string, reason: string) => issues.push({ document: "file", field, reason });
  // An empty file is an empty policy (the operator removed every entry).
  if (raw === null || raw === undefined) return { profiles: [] };
  if (!isObject(raw)) {
    top("", "must be a mapping with operator_profiles: [...]");
    throw new OperatorPolicyError(source, issues);
  }
  for (const k of Object.keys(raw)) if (k !== "operator_profiles") top(printable(k), "unknown field (expected operator_profiles)");
  const list = raw.operator_profiles ?? [];
  if (!Array.isArray(list)) {
    top("operator_profiles", "must be a list");
    throw new OperatorPolicyError(source, issues);
  }
  if (list.length > MAX_OPERATOR_PROFILES) top("operator_profiles", `at most ${MAX_OPERATOR_PROFILES} operator profiles`);
  const profiles: OperatorProfile[] = [];
  const seen = new Map<string, number>();
  list.forEach((entry, i) => {
    const id = isObject(entry) && typeof entry.id === "string" ? entry.id : undefined;
    const name = `operator_profiles[${i}]${id !== undefined ? ` (${printable(id)})` : ""}`;
    const report = (field: string, reason: string) => issues.push({ document: name, field, reason });
    if (!isObject(entry)) {
      report("", "must be a mapping: id, placement, select, inbound_rules, outbound_rules, tags");
      return;
    }
    for (const k of Object.keys(entry)) {
      if (!ENTRY_KEYS.has(k)) report(printable(k), k === "labels" ? "not allowed: the adapter sets an operator profile's labels" : "unknown field");
    }
    if (id !== undefined) {
      if (!id.startsWith(OPERATOR_PREFIX)) report("id", `must start with '${OPERATOR_PREFIX}' (so it can never be a security group's id)`);
      const before = seen.get(id);
      if (before !== undefined) report("id", `appears twice (also operator_profiles[${before}])`);
      else seen.set(id, i);
    }
    const placement = entry.placement;
    if (placement !== "before" && placement !== "after") {
      report("placement", placement === undefined ? "is required: before or after the port's security groups" : `'${printable(String(placement))}' is not before or after`);
    }
    const sel = readSelect(entry.select, report);
    // The body is a Palisade profile: the model's own parser and validation, nothing else.
    const body: Record<string, unknown> = { kind: "Profile" };
    for (const k of ["id", "tags", "inbound_rules", "outbound_rules"]) if (k in entry) body[k] = entry[k];
    const parsed = parseDocument(body, i + 1);
    for (const x of parsed.issues) report(x.field, x.reason);
    const profile = parsed.object?.kind === "Profile" ? parsed.object.profile : undefined;
    profile?.tags.forEach((t, j) => {
      if (!t.startsWith(OPERATOR_PREFIX)) report(`tags[${j}]`, `must start with '${OPERATOR_PREFIX}' (a security group's tag is its id: an operator tag must not make ports members of a group)`);
    });
    if (!profile || sel === undefined || (placement !== "before" && placement !== "after")) return;
    const op: OperatorProfile = { profile, placement };
    if (sel !== "all") {
      if (sel.projects) op.projects = sel.projects;
      if (sel.networks) op.networks = sel.networks;
    }
    profiles.push(op);
  });
  if (issues.length) throw new OperatorPolicyError(source, issues);
  return { profiles };
}

function readSelect(v: unknown, report: (field: string, reason: string) => void): "all" | { projects?: string[]; networks?: string[] } | undefined {
  const what = "is required: all, or {projects: [...], networks: [...]}";
  if (v === "all") return "all";
  if (!isObject(v)) {
    report("select", v === undefined ? what : `'${printable(typeof v === "string" ? v : JSON.stringify(v) ?? String(v))}' ${what.replace("is required: ", "is not ")}`);
    return undefined;
  }
  const out: { projects?: string[]; networks?: string[] } = {};
  let ok = true;
  for (const k of Object.keys(v)) if (!SELECT_KEYS.has(k)) { report(`select.${printable(k)}`, "unknown field (expected projects, networks)"); ok = false; }
  for (const k of ["projects", "networks"] as const) {
    const list = v[k];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length === 0) {
      report(`select.${k}`, "must be a non-empty list of Neutron ids (select: all selects every port)");
      ok = false;
      continue;
    }
    list.forEach((x, j) => {
      const bad = typeof x !== "string" ? "must be a string" : idProblem(x, LIMITS.idLength);
      if (bad) { report(`select.${k}[${j}]`, bad); ok = false; }
    });
    out[k] = [...new Set(list as string[])];
  }
  if (ok && !out.projects && !out.networks) {
    report("select", "needs projects and/or networks (select: all selects every port)");
    ok = false;
  }
  return ok ? out : undefined;
}

/** Whether an operator profile applies to a port: its project (project_id) and network, as selected. */
export function selects(op: OperatorProfile, port: NeutronPort): boolean {
  if (op.projects && !op.projects.includes(port.project_id ?? "")) return false;
  if (op.networks && !op.networks.includes(port.network_id ?? "")) return false;
  return true;
}
