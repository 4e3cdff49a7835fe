// Neutron's logging API onto Palisade's flow records (DESIGN §11.13), the
// pure part: what `GET /v2.0/log/logs` says (parseLogsBody), which ports and
// events each enabled log selects (selectLogs), and the line an operator's
// log pipeline reads for one flow record of a selected port
// (networkLogLine). The I/O — reading the controller's flow stream and
// writing the file — is network-log-writer.ts.
//
// Neutron's meaning, followed here (resource_type security_group only):
//   resource_id only        every port in that group
//   target_id only          that port, whatever its groups
//   both                    that port while it is in that group
//   neither                 every port of the log's project
//   event ACCEPT            allowed flows: with resource_id, only those the
//                           group's own rules admitted
//   event DROP              dropped flows of the selected ports (a drop is
//                           no group's: groups only allow)
//   event ALL               both
//   enabled false           nothing
import { parseEndpointKey } from "../model/index.js";
import type { FlowRecord } from "../contract/flow.js";
import { TranslateError, type NeutronPort, type TranslateIssue } from "./neutron-types.js";
import { ORCHESTRATOR } from "./translate.js";

export type NeutronLogEvent = "ACCEPT" | "DROP" | "ALL";

export interface NeutronLog {
  id: string;
  name?: string;
  project_id?: string;
  resource_type: string;
  resource_id: string | null;
  target_id: string | null;
  event: NeutronLogEvent;
  enabled: boolean;
}

/** At most this many logs are read (a larger listing is refused: the last good selection stays). */
export const MAX_LOGS = 10_000;

const ID_RE = /^[A-Za-z0-9_.:-]{1,255}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "a list" : typeof v);

/**
 * Validates `{"logs": [...]}` (GET /v2.0/log/logs). Any problem refuses the
 * whole listing (TranslateError naming each log and field): Neutron checks
 * its own logs, so a malformed one means the listing cannot be trusted, and
 * the caller keeps its last good selection.
 */
export function parseLogsBody(json: unknown): NeutronLog[] {
  const issues: TranslateIssue[] = [];
  const file = "log listing";
  if (!isObject(json) || !Array.isArray(json.logs)) {
    throw new TranslateError([{ object: file, field: "logs", reason: `expected the body of GET /v2.0/log/logs: {"logs": [...]}, not ${isObject(json) ? `logs: ${typeName(json.logs)}` : typeName(json)}` }]);
  }
  if (json.logs.length > MAX_LOGS) throw new TranslateError([{ object: file, field: "logs", reason: `${json.logs.length} logs: at most ${MAX_LOGS}` }]);
  const out: NeutronLog[] = [];
  json.logs.forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ object: file, field: `logs[${i}]`, reason: `must be an object, not ${typeName(raw)}` });
      return;
    }
    const object = typeof raw.id === "string" && ID_RE.test(raw.id) ? `log ${raw.id}` : `logs[${i}]`;
    const bad = (field: string, reason: string) => issues.push({ object, field, reason });
    const before = issues.length;
    const id = raw.id;
    if (typeof id !== "string" || !ID_RE.test(id)) bad("id", "must be a Neutron id");
    const optId = (k: string): string | null => {
      const v = raw[k];
      if (v === undefined || v === null || v === "") return null;
      if (typeof v === "string" && ID_RE.test(v)) return v;
      bad(k, `must be a Neutron id or null, not ${typeName(v)}`);
      return null;
    };
    const resourceId = optId("resource_id");
    const targetId = optId("target_id");
    if (typeof raw.resource_type !== "string") bad("resource_type", `must be a string, not ${typeName(raw.resource_type)}`);
    const event = raw.event;
    if (event !== "ACCEPT" && event !== "DROP" && event !== "ALL") bad("event", `must be ACCEPT, DROP or ALL, not ${typeof event === "string" ? `'${event.slice(0, 20)}'` : typeName(event)}`);
    if (typeof raw.enabled !== "boolean") bad("enabled", `must be true or false, not ${typeName(raw.enabled)}`);
    const project = raw.project_id ?? raw.tenant_id;
    if (project !== undefined && project !== null && typeof project !== "string") bad("project_id", `must be a string, not ${typeName(project)}`);
    if (issues.length !== before) return;
    const log: NeutronLog = {
      id: id as string, resource_type: raw.resource_type as string, resource_id: resourceId, target_id: targetId,
      event: event as NeutronLogEvent, enabled: raw.enabled as boolean,
    };
    if (typeof raw.name === "string" && raw.name) log.name = raw.name.slice(0, 255);
    if (typeof project === "string") log.project_id = project;
    out.push(log);
  });
  if (issues.length) throw new TranslateError(issues);
  return out;
}

/** One log as it applies to one port. */
export interface PortLogEntry {
  logId: string;
  accept: boolean;
  drop: boolean;
  /** The log's resource_id: its accepts are only those this group admitted. */
  group?: string;
}

export interface PortLogs {
  /** The port's security groups (Neutron's order). */
  groups: readonly string[];
  project?: string;
  logs: PortLogEntry[];
}

export interface LogSelection {
  /** Port id -> the enabled logs that select it. */
  byPort: ReadonlyMap<string, PortLogs>;
  /** Enabled security_group logs. */
  enabled: number;
  /** Logs of another resource type (Neutron's snat logs): not Palisade's. */
  ignored: number;
}

export const EMPTY_SELECTION: LogSelection = { byPort: new Map(), enabled: 0, ignored: 0 };

/** Which ports each enabled log selects, with which events (the header's table). */
export function selectLogs(logs: readonly NeutronLog[], ports: readonly NeutronPort[]): LogSelection {
  const byPort = new Map<string, PortLogs>();
  const portById = new Map(ports.map((p) => [p.id, p]));
  const inGroup = new Map<string, NeutronPort[]>();
  const inProject = new Map<string, NeutronPort[]>();
  for (const p of ports) {
    for (const g of new Set(p.security_groups ?? [])) {
      const l = inGroup.get(g);
      if (l) l.push(p);
      else inGroup.set(g, [p]);
    }
    if (p.project_id !== undefined) {
      const l = inProject.get(p.project_id);
      if (l) l.push(p);
      else inProject.set(p.project_id, [p]);
    }
  }
  let enabled = 0;
  let ignored = 0;
  for (const log of [...logs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    if (log.resource_type !== "security_group") {
      ignored++;
      continue;
    }
    if (!log.enabled) continue;
    enabled++;
    let selected: readonly NeutronPort[];
    if (log.target_id !== null) {
      const p = portById.get(log.target_id);
      // With a group too: only while the port is in it.
      selected = p && (log.resource_id === null || (p.security_groups ?? []).includes(log.resource_id)) ? [p] : [];
    } else if (log.resource_id !== null) {
      selected = inGroup.get(log.resource_id) ?? [];
    } else {
      selected = log.project_id === undefined ? [] : inProject.get(log.project_id) ?? [];
    }
    const entry: PortLogEntry = { logId: log.id, accept: log.event !== "DROP", drop: log.event !== "ACCEPT" };
    if (log.resource_id !== null) entry.group = log.resource_id;
    for (const p of selected) {
      let pl = byPort.get(p.id);
      if (!pl) {
        pl = { groups: p.security_groups ?? [], logs: [] };
        if (p.project_id !== undefined) pl.project = p.project_id;
        byPort.set(p.id, pl);
      }
      pl.logs.push(entry);
    }
  }
  return { byPort, enabled, ignored };
}

/** One line of the network log file (DESIGN §11.13; README "Logging"). */
export interface NetworkLogLine {
  time: string;
  last_seen: string;
  event: "ACCEPT" | "DROP";
  log_ids: string[];
  port_id: string;
  project_id: string | null;
  /** The group the record is about: the one whose rule admitted it, else the logs' one group, else null. */
  security_group_id: string | null;
  security_group_ids: string[];
  direction: "ingress" | "egress";
  host: string;
  src: string;
  dst: string;
  protocol: number;
  src_port: number | null;
  dst_port: number | null;
  icmp_type: number | null;
  icmp_code: number | null;
  packets: number;
  /** Palisade's words for what decided (trace's), and the profile and rule. */
  decision: string;
  profile: string | null;
  rule_index: number | null;
}

/**
 * The line for one flow record, or undefined when no enabled log selects
 * its port for its event (or it is no OpenStack port's).
 */
export function networkLogLine(r: FlowRecord, sel: LogSelection): NetworkLogLine | undefined {
  if (!r.endpoint) return undefined;
  const key = parseEndpointKey(r.endpoint);
  if (!key || key.orchestrator !== ORCHESTRATOR) return undefined;
  const pl = sel.byPort.get(key.id);
  if (!pl) return undefined;
  const event = r.verdict === "allow" ? "ACCEPT" : r.verdict === "deny" ? "DROP" : undefined;
  if (!event) return undefined;
  const matched = pl.logs.filter((l) => (event === "ACCEPT" ? l.accept && (l.group === undefined || l.group === r.profile) : l.drop));
  if (matched.length === 0) return undefined;
  const logGroups = new Set(matched.map((l) => l.group));
  const decidingGroup = r.profile && pl.groups.includes(r.profile) ? r.profile : undefined;
  const single = logGroups.size === 1 ? [...logGroups][0] : undefined;
  return {
    time: new Date(r.firstSeenUnixMs).toISOString(),
    last_seen: new Date(r.lastSeenUnixMs).toISOString(),
    event,
    log_ids: [...new Set(matched.map((l) => l.logId))],
    port_id: key.id,
    project_id: pl.project ?? null,
    security_group_id: decidingGroup ?? single ?? null,
    security_group_ids: [...pl.groups],
    direction: r.direction === "inbound" ? "ingress" : "egress",
    host: r.host,
    src: r.src,
    dst: r.dst,
    protocol: r.protocol,
    src_port: r.srcPort ?? null,
    dst_port: r.dstPort ?? null,
    icmp_type: r.icmpType ?? null,
    icmp_code: r.icmpCode ?? null,
    packets: r.packets,
    decision: r.decision,
    profile: r.profile || null,
    rule_index: r.ruleIndex >= 0 ? r.ruleIndex : null,
  };
}
