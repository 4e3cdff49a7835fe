// What operators rely on: metrics with the documented names that move,
// /healthz and /readyz, and SIGTERM — the controller drains, the driver
// exits leaving its rules in place (traffic stays as programmed).
import { execa } from "execa";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../lab/etcd-process.js";
import { createLab, type Lab } from "../lab/lab.js";
import { BIN, eventually, palisadectl, requireBuild, uniqueName } from "../support/binaries.js";
import { positionChain } from "../../services/calc/names.js";

const dir = mkdtempSync(join(tmpdir(), "palisade-ops-"));
const socket = join(dir, "ctl.sock");
let lab: Lab;
let controller: ReturnType<typeof execa> | undefined;
let driver: ReturnType<Lab["spawnIn"]> | undefined;
let ctlMetrics = 0;
const DRIVER_METRICS = 19090;
const addr = `unix:${socket}`;

const CONTROLLER_METRICS = [
  "palisade_controller_connected_hosts", "palisade_controller_stream_queue_depth", "palisade_controller_stream_resets_total",
  "palisade_controller_calc_duration_seconds_bucket", "palisade_controller_model_revision", "palisade_controller_etcd_revision",
  "palisade_controller_api_requests_total", "palisade_controller_model_watch_lag_revisions", "palisade_controller_status_transactions_total",
  "palisade_controller_status_pending_keys", "palisade_controller_status_lease_held", "palisade_controller_sync_refused_total",
  "palisade_controller_etcd_errors_total", "palisade_controller_etcd_max_txn_ops",
];
const DRIVER_METRIC_NAMES = [
  "palisade_driver_apply_duration_seconds_bucket", "palisade_driver_rules_programmed", "palisade_driver_ipsets_programmed",
  "palisade_driver_drift_repairs_total", "palisade_driver_apply_failures_total", "palisade_driver_applied_revision", "palisade_driver_in_sync",
  "palisade_driver_ruleset_monitor_up", "palisade_driver_ipset_session_starts_total", "palisade_driver_ipset_session_failures_total",
];

/** Each metric's value: equal to, or greater than, a number. */
function expectMetrics(text: string, want: readonly (readonly [string, "=" | ">", number])[]): void {
  for (const [name, op, n] of want) {
    if (op === "=") expect(value(text, name), name).toBe(n);
    else expect(value(text, name), name).toBeGreaterThan(n);
  }
}

async function get(url: string) {
  const r = await fetch(url);
  return { status: r.status, body: await r.text() };
}
/** HTTP GET from inside a namespace (the driver's metrics port lives there). */
async function getIn(ns: string, path: string) {
  const out = await lab.exec(ns, process.execPath, ["-e", `fetch("http://127.0.0.1:${DRIVER_METRICS}${path}").then(async r=>console.log(JSON.stringify({status:r.status,body:await r.text()})),()=>console.log(JSON.stringify({status:0,body:""})))`]);
  return JSON.parse(out) as { status: number; body: string };
}
const value = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(series + " ") || l.startsWith(series));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : NaN;
};

describe("operations", () => {
  let hv: string;
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("op")}-`);
    hv = (await lab.addHypervisor("hv1")).ns;
    await lab.addWorkload("hv1", { name: "a", iface: "tapopa", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapopb", host: 11 });
    await lab.listen("a", [80, 81]);
  });
  afterAll(async () => {
    controller?.kill("SIGKILL");
    await lab?.destroy();
  });

  it("driver: not ready before it is in sync; /healthz answers", async () => {
    driver = lab.spawnIn(hv, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", "hv1", "--metrics-listen", `127.0.0.1:${DRIVER_METRICS}`, "--drift-check-seconds", "3"], { logFile: join(dir, "driver.log") });
    await eventually(async () => (await getIn(hv, "/healthz")).status === 200, { what: "driver healthz" });
    const ready = await getIn(hv, "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body).toContain("not in sync");
  });

  it("controller: healthy, ready, metrics with the documented names that move", async () => {
    ctlMetrics = await freePort();
    controller = execa(process.execPath, [BIN.controller, "--insecure", "--etcd-endpoints", inject("etcdUrl"), "--listen", `127.0.0.1:0,${addr}`, "--etcd-prefix", `/${uniqueName("op")}`, "--metrics-listen", `127.0.0.1:${ctlMetrics}`], {
      reject: false, stdout: { file: join(dir, "controller.log") }, stderr: { file: join(dir, "controller.log") },
    });
    await eventually(async () => (await get(`http://127.0.0.1:${ctlMetrics}/readyz`)).status === 200, { what: "controller ready" });
    expect((await get(`http://127.0.0.1:${ctlMetrics}/healthz`)).status).toBe(200);
    const w = lab.workloads;
    const docs = [
      { kind: "Profile", id: "srv", tags: [], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "a", id: "e", name: "tapopa", state: "active", ipv4_nets: [w.get("a")!.ipv4], profile_ids: ["srv"] },
      { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "b", id: "e", name: "tapopb", state: "active", ipv4_nets: [w.get("b")!.ipv4], profile_ids: ["srv"] },
    ];
    expect((await palisadectl(addr, ["apply", "-f", "-"], JSON.stringify(docs))).code).toBe(0);
    expect((await palisadectl(addr, ["apply", "-f", "-"], JSON.stringify([{ kind: "Profile", id: "x", inbound_rules: [{ protocol: "tcp", dst_ports: [70000] }] }]))).code).toBe(1);
    // The driver may still be backing off from before the controller existed.
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.some((h: { in_sync: boolean }) => h.in_sync);
    }, { what: "driver connected", timeoutMs: 30_000 });
    expect((await palisadectl(addr, ["wait", "--timeout", "30"])).code).toBe(0);
    const m = (await get(`http://127.0.0.1:${ctlMetrics}/metrics`)).body;
    for (const name of CONTROLLER_METRICS) expect(m, name).toContain(name);
    expectMetrics(m, [
      // The CLI validates locally, so the invalid document never reached the API; the valid apply did.
      ['palisade_controller_api_requests_total{method="Apply",code="OK"}', "=", 1],
      ["palisade_controller_connected_hosts", "=", 1],
      ["palisade_controller_model_revision", ">", 0],
      ["palisade_controller_calc_duration_seconds_count", ">", 0],
      // Watch lag is measured against the model: 0 once caught up, whatever status writes did to etcd's revision.
      ["palisade_controller_model_watch_lag_revisions", "=", 0],
      ["palisade_controller_status_lease_held", "=", 1],
      ["palisade_controller_status_transactions_total", ">", 0],
    ]);
  });

  it("driver: ready once in sync; metrics with the documented names that move", async () => {
    await eventually(async () => (await getIn(hv, "/readyz")).status === 200, { what: "driver ready" });
    const m = (await getIn(hv, "/metrics")).body;
    for (const name of DRIVER_METRIC_NAMES) expect(m, name).toContain(name);
    expectMetrics(m, [
      ["palisade_driver_in_sync", "=", 1],
      ["palisade_driver_applied_revision", ">", 0],
      // The lab runs iptables-nft: the tamper watch is up.
      ["palisade_driver_ruleset_monitor_up", "=", 1],
      ['palisade_driver_rules_programmed{family="ipv4"}', ">", 10],
      ['palisade_driver_apply_duration_seconds_count{stage="total"}', ">", 0],
    ]);
    // Drift: someone flushes one of our chains; the next read-back repairs and counts it.
    const before = value(m, "palisade_driver_drift_repairs_total");
    await lab.exec(hv, "iptables", ["-F", positionChain("to", 0)]);
    // This driver reads back every 3 s (--drift-check-seconds).
    await eventually(async () => value((await getIn(hv, "/metrics")).body, "palisade_driver_drift_repairs_total") > before, { what: "drift repaired", timeoutMs: 20_000 });
    expect(await lab.exec(hv, "iptables", ["-S", positionChain("to", 0)])).toContain("pal-pi-srv");
  });

  it("SIGTERM: the driver exits 0 and leaves its rules enforcing; the controller drains and exits 0", async () => {
    expect(await lab.probeTcp("b", "a", 80)).toBe("open");
    expect(await lab.probeTcp("b", "a", 81)).toBe("timeout");
    driver!.kill("SIGTERM");
    const d = await driver!;
    expect(d.exitCode).toBe(0);
    expect(await lab.exec(hv, "iptables-save", ["-t", "filter"])).toContain(`:${positionChain("to", 0)}`);
    expect(await lab.probeTcp("b", "a", 80)).toBe("open");
    expect(await lab.probeTcp("b", "a", 81)).toBe("timeout");
    const t0 = Date.now();
    controller!.kill("SIGTERM");
    const c = await controller!;
    expect(c.exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
