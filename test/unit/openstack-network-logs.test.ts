// Neutron's logging API onto flow records (services/openstack/network-logs.ts,
// DESIGN §11.13): the listing's checks, which ports and events each log
// selects (resource, target, both, neither; disabled, deleted, other
// resource types), and the line written for a flow record.
import * as grpc from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { FlowRecord, FlowServiceClient } from "../../services/contract/flow.js";
import { startNetworkLogWriter } from "../../services/openstack/network-log-writer.js";
import { EMPTY_SELECTION, networkLogLine, parseLogsBody, selectLogs, type NeutronLog } from "../../services/openstack/network-logs.js";
import { TranslateError, type NeutronPort } from "../../services/openstack/translate.js";

const WEB = "sg-web";
const DB = "sg-db";
const port = (id: string, groups: string[], project = "proj-a"): NeutronPort => ({
  id, project_id: project, mac_address: "fa:16:3e:00:00:01", admin_state_up: true, device_owner: "compute:nova", device_id: `vm-${id}`,
  "binding:host_id": "hv1", fixed_ips: [], security_groups: groups,
});
const PORTS = [port("p1", [WEB]), port("p2", [WEB, DB]), port("p3", [DB]), port("p4", [DB], "proj-b")];
const log = (id: string, o: Partial<NeutronLog>): NeutronLog => ({ id, resource_type: "security_group", resource_id: null, target_id: null, event: "ALL", enabled: true, project_id: "proj-a", ...o });

const record = (portId: string, o: Partial<FlowRecord> = {}): FlowRecord => ({
  host: "hv1", endpoint: `hv1/openstack/vm-${portId}/${portId}`, interfaceName: `tap${portId}`, direction: "inbound",
  src: "198.18.1.10", dst: "198.18.1.21", protocol: 6, srcPort: 40000, dstPort: 22, verdict: "deny", decision: "default-deny",
  profile: "", ruleIndex: -1, packets: 1, firstSeenUnixMs: Date.UTC(2026, 11, 6, 18, 0, 0), lastSeenUnixMs: Date.UTC(2026, 11, 6, 18, 0, 1),
  chain: "pal-ct", controller: "c1", network: "", ...o,
});
const selected = (logs: NeutronLog[]) => Object.fromEntries([...selectLogs(logs, PORTS).byPort].map(([p, l]) => [p, l.logs.map((e) => e.logId)]));

describe("parseLogsBody: GET /v2.0/log/logs", () => {
  it("reads Neutron's logs (null resource and target, tenant_id for project)", () => {
    const logs = parseLogsBody({
      logs: [{ id: "l1", name: "n", tenant_id: "proj-a", resource_type: "security_group", resource_id: WEB, target_id: null, event: "DROP", enabled: true, revision_number: 0 }],
    });
    expect(logs).toEqual([{ id: "l1", name: "n", project_id: "proj-a", resource_type: "security_group", resource_id: WEB, target_id: null, event: "DROP", enabled: true }]);
  });

  it("refuses the whole listing on any bad log, naming it and the field", () => {
    const bad = () => parseLogsBody({
      logs: [
        { id: "l1", resource_type: "security_group", resource_id: WEB, event: "DROP", enabled: true },
        { id: "l2", resource_type: "security_group", event: "SOME", enabled: "yes" },
      ],
    });
    expect(bad).toThrow(TranslateError);
    expect(bad).toThrow(/log l2: event: must be ACCEPT, DROP or ALL, not 'SOME'[\s\S]*log l2: enabled: must be true or false, not string/);
    expect(() => parseLogsBody({ log: [] })).toThrow(/expected the body of GET \/v2.0\/log\/logs/);
    expect(() => parseLogsBody({ logs: [{ id: "l1", resource_type: "security_group", target_id: 7, event: "ALL", enabled: true }] })).toThrow(/log l1: target_id: must be a Neutron id or null, not number/);
  });
});

describe("selectLogs: which ports each log selects", () => {
  it("resource only: every port in the group", () => {
    expect(selected([log("l1", { resource_id: WEB })])).toEqual({ p1: ["l1"], p2: ["l1"] });
  });
  it("target only: that port, whatever its groups", () => {
    expect(selected([log("l1", { target_id: "p3" })])).toEqual({ p3: ["l1"] });
  });
  it("resource and target: the port only while it is in the group", () => {
    expect(selected([log("l1", { resource_id: DB, target_id: "p2" })])).toEqual({ p2: ["l1"] });
    expect(selected([log("l1", { resource_id: DB, target_id: "p1" })])).toEqual({});
  });
  it("neither: every port of the log's project", () => {
    expect(selected([log("l1", {})])).toEqual({ p1: ["l1"], p2: ["l1"], p3: ["l1"] });
    expect(selected([log("l1", { project_id: "proj-b" })])).toEqual({ p4: ["l1"] });
  });
  it("a disabled log selects nothing; a deleted log (gone from the listing) nothing; other resource types are ignored and counted", () => {
    expect(selected([log("l1", { resource_id: WEB, enabled: false })])).toEqual({});
    expect(selected([])).toEqual({});
    const s = selectLogs([log("l1", { resource_type: "snat" }), log("l2", { resource_id: DB })], PORTS);
    expect({ enabled: s.enabled, ignored: s.ignored, ports: [...s.byPort.keys()].sort() }).toEqual({ enabled: 1, ignored: 1, ports: ["p2", "p3", "p4"] });
  });
  it("a missing target or group selects nothing", () => {
    expect(selected([log("l1", { target_id: "gone" }), log("l2", { resource_id: "sg-gone" })])).toEqual({});
  });
});

describe("networkLogLine: the line for a flow record", () => {
  it("DROP: a dropped flow of a selected port, naming the port, the log's group, the port's groups", () => {
    const sel = selectLogs([log("l1", { resource_id: WEB, event: "DROP" })], PORTS);
    expect(networkLogLine(record("p2"), sel)).toEqual({
      time: "2026-12-06T18:00:00.000Z", last_seen: "2026-12-06T18:00:01.000Z", event: "DROP", log_ids: ["l1"], port_id: "p2", project_id: "proj-a",
      security_group_id: WEB, security_group_ids: [WEB, DB], direction: "ingress", host: "hv1", src: "198.18.1.10", dst: "198.18.1.21",
      protocol: 6, src_port: 40000, dst_port: 22, icmp_type: null, icmp_code: null, packets: 1, decision: "default-deny", profile: null, rule_index: null,
    });
    // Not an accept, not another port.
    expect(networkLogLine(record("p2", { verdict: "allow", decision: "rule", profile: WEB, ruleIndex: 0 }), sel)).toBeUndefined();
    expect(networkLogLine(record("p3"), sel)).toBeUndefined();
    expect(networkLogLine(record("p2"), EMPTY_SELECTION)).toBeUndefined();
  });

  it("ACCEPT with a group: only flows that group's rules admitted; with a target only: any", () => {
    const byGroup = selectLogs([log("l1", { resource_id: DB, event: "ACCEPT" })], PORTS);
    expect(networkLogLine(record("p2", { verdict: "allow", decision: "rule", profile: DB, ruleIndex: 1 }), byGroup)).toMatchObject({ event: "ACCEPT", security_group_id: DB, profile: DB, rule_index: 1 });
    expect(networkLogLine(record("p2", { verdict: "allow", decision: "rule", profile: WEB, ruleIndex: 0 }), byGroup)).toBeUndefined();
    expect(networkLogLine(record("p2"), byGroup)).toBeUndefined(); // a drop
    const byTarget = selectLogs([log("l2", { target_id: "p2", event: "ACCEPT" })], PORTS);
    expect(networkLogLine(record("p2", { verdict: "allow", decision: "rule", profile: WEB, ruleIndex: 0, direction: "outbound" }), byTarget))
      .toMatchObject({ event: "ACCEPT", security_group_id: WEB, log_ids: ["l2"], direction: "egress" });
  });

  it("ALL: both; two logs on one port are named together; no one group named when they differ", () => {
    const sel = selectLogs([log("l1", { resource_id: WEB }), log("l2", { resource_id: DB, event: "DROP" })], PORTS);
    expect(networkLogLine(record("p2"), sel)).toMatchObject({ event: "DROP", log_ids: ["l1", "l2"], security_group_id: null, security_group_ids: [WEB, DB] });
    expect(networkLogLine(record("p2", { verdict: "allow", decision: "rule", profile: WEB, ruleIndex: 0 }), sel)).toMatchObject({ event: "ACCEPT", log_ids: ["l1"], security_group_id: WEB });
    // A drop decided by an operator profile (a deny rule): named as the profile, the group from the log.
    expect(networkLogLine(record("p1", { decision: "rule", profile: "openstack-operator-no-smtp", ruleIndex: 0 }), sel))
      .toMatchObject({ security_group_id: WEB, profile: "openstack-operator-no-smtp", rule_index: 0 });
  });

  it("records of no OpenStack port (no endpoint, another orchestrator) are never written", () => {
    const sel = selectLogs([log("l1", {})], PORTS);
    expect(networkLogLine(record("p1", { endpoint: "" }), sel)).toBeUndefined();
    expect(networkLogLine(record("p1", { endpoint: "hv1/k8s/vm-p1/p1" }), sel)).toBeUndefined();
    expect(networkLogLine(record("p1"), sel)).toMatchObject({ port_id: "p1" });
  });
});

describe("the network log file (network-log-writer.ts)", () => {
  /** A flow stream the test feeds by hand, as FlowService.Watch delivers. */
  function fakeFlows() {
    const stream = new EventEmitter() as EventEmitter & { cancel(): void };
    stream.cancel = () => stream.emit("error", Object.assign(new Error("cancelled"), { code: grpc.status.CANCELLED }));
    return { stream, client: { watch: () => stream } as unknown as FlowServiceClient };
  }
  const until = async (cond: () => boolean, what: string) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cond(), what).toBe(true);
  };

  it("a file that cannot be written drops records and counts them dropped (never written); it is opened again and written once it can be", async () => {
    const dir = mkdtempSync(join(tmpdir(), "palisade-netlog-"));
    try {
      const file = join(dir, "missing", "network.log");
      const counts = { written: 0, dropped: 0 };
      const { stream, client } = fakeFlows();
      const w = startNetworkLogWriter({ flows: client, file, logger: pino({ level: "silent" }), reopenMs: 20, onRecord: (r, n) => { counts[r] += n; } });
      w.setSelection(selectLogs([log("l1", { resource_id: WEB, event: "DROP" })], PORTS));
      await new Promise((r) => setTimeout(r, 50)); // the open fails (no directory)
      stream.emit("data", { records: [record("p2"), record("p1")], dropped: 0 });
      expect(counts).toEqual({ written: 0, dropped: 2 });
      mkdirSync(join(dir, "missing"));
      await until(() => { stream.emit("data", { records: [record("p2")], dropped: 0 }); return counts.written > 0; }, "written again after the directory appeared");
      await w.close();
      const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(lines.length).toBe(counts.written);
      expect(lines[0]).toMatchObject({ port_id: "p2", event: "DROP" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
