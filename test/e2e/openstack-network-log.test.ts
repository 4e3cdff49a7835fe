// Issue #22 items 4-5: Neutron's logging API as a cloud uses it (DESIGN
// §11.13). The real neutron-server with the `log` service plugin and the
// Palisade ML2 driver (its log driver makes Neutron accept security_group
// logs), the real `openstack` CLI, the namespace lab, real packets:
//
//   hv1: client (198.18.1.10, group "open"), vm-web (198.18.1.21, group "web": TCP 80)
//
//   - before any log: a dropped TCP 22 probe is in `palisadectl flows` (drops
//     are always reported) but nothing is written to --network-log-file;
//   - `network log create --resource-type security_group --resource web
//     --event DROP`: the next dropped probe is a line naming the port, the
//     group and the log; admitted TCP 80 is not (DROP only);
//   - `network log delete`: drops still reach `palisadectl flows`, and no
//     line is written any more;
//   - `network log create --target PORT --event ACCEPT` (the driver runs
//     --flow-logs all): an admitted TCP 80 is a line naming the group whose
//     rule admitted it; drops are not written.
import { execa } from "execa";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Lab } from "../lab/lab.js";
import { eventually, palisadectl, uniqueName } from "../support/binaries.js";
import { startMl2Stack, type Ml2Stack } from "../support/ml2-stack.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const OPENSTACK = "/usr/bin/openstack";
const CLOUD = "palisade-lab";

let stack: Ml2Stack;
let lab: Lab;
let cloudsFile: string;
let logFile: string;
let web: Json;
let webPort: Json;

/** One `openstack` command against the test's Neutron (only the test's clouds.yaml configures it). */
async function openstack(args: string[], opts: { json?: boolean } = {}): Promise<Json> {
  const env: Record<string, string> = { OS_CLIENT_CONFIG_FILE: cloudsFile };
  for (const k of ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  const json = opts.json ?? true;
  const r = await execa(OPENSTACK, ["--os-cloud", CLOUD, ...args, ...(json ? ["-f", "json"] : [])], {
    env, extendEnv: false, reject: false, timeout: 60_000, stdin: "ignore",
  });
  if (r.exitCode !== 0) throw new Error(`openstack ${args.join(" ")}: exit ${r.exitCode ?? r.signal}: ${String(r.stderr).slice(-1500)}`);
  return json ? JSON.parse(String(r.stdout)) as Json : {};
}

/** The network log file's lines (objects). */
const lines = (): Json[] => (existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Json) : []);
const watchLog = () => readFileSync(join(stack.dir, "watch.log"), "utf8");
const logsChangedCount = () => (watchLog().match(/network log: Neutron's logs changed/g) ?? []).length;

/** palisadectl flows: the deny records of vm-web's endpoint for TCP `port` last seen at or after `since`. */
async function denyRecords(port: number, since: number): Promise<Json[]> {
  const r = await palisadectl(stack.addr, ["flows", "-o", "json", "--verdict", "deny"]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Json[]).filter((x) => x.dst_port === port && String(x.endpoint ?? "").endsWith(`/${webPort.id}`) && Date.parse(x.last_seen) >= since);
}

describe("Neutron's logging API: `openstack network log create/delete` with the real neutron-server", () => {
  beforeAll(async () => {
    stack = await startMl2Stack({
      prefix: `${uniqueName("nlog")}-`, etcd: inject("etcdUrl"), networkLog: true,
      // Admitted flows are reported too, so that a DROP log's leaving them out means something.
      driverArgs: ["--flow-logs", "all"],
      watchArgs: (dir) => ["--network-log-file", (logFile = join(dir, "network-log.jsonl"))],
    });
    lab = stack.lab;
    cloudsFile = join(stack.dir, "clouds.yaml");
    writeFileSync(cloudsFile, `clouds:\n  ${CLOUD}:\n    auth_type: none\n    auth:\n      endpoint: ${stack.neutron.url}\n`);
    // The cloud through the REST API (the CLI path for these is
    // openstack-cli.test.ts; a CLI process per object is slow on a loaded
    // machine); the logs below through the CLI.
    const { api } = stack;
    const net = await api.network("net-log", "198.18.1.0/24");
    web = await api.group("web");
    await api.rule(web.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
    const open = await api.group("open");
    await api.rule(open.id, { protocol: "tcp" });
    const portCreate = (name: string, ip: string, group: string) => api.port({
      name, network_id: net.id, device_id: name, "binding:host_id": "hv1", security_groups: [group], fixed_ips: [{ subnet_id: net.subnets[0], ip_address: ip }],
    });
    const client = await portCreate("vm-client", "198.18.1.10", open.id);
    webPort = await portCreate("vm-web", "198.18.1.21", web.id);
    await lab.addWorkload("hv1", { name: "client", iface: `tap${client.id.slice(0, 11)}`, host: 10, mac: client.mac_address });
    await lab.addWorkload("hv1", { name: "vm-web", iface: `tap${webPort.id.slice(0, 11)}`, host: 21, mac: webPort.mac_address });
    await lab.listen("vm-web", [22, 80]);
    for (const p of [client, webPort]) {
      await eventually(async () => (await stack.api.request("GET", `/ports/${p.id}`)).port.status === "ACTIVE", { what: `port ${p.name} ACTIVE`, timeoutMs: 60_000, intervalMs: 100 });
    }
  }, 360_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it("Neutron lists security_group as loggable (the Palisade log driver is registered)", async () => {
    const r = await openstack(["network", "loggable", "resources", "list"]);
    expect(r.map((x: Json) => x["Supported types"] ?? x.type)).toContain("security_group");
  }, 60_000);

  it("before any log: a drop is in `palisadectl flows`, and nothing is written to the network log file", async () => {
    const since = Date.now();
    expect(await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })).toBe("timeout");
    await eventually(async () => (await denyRecords(22, since)).length > 0, { what: "a deny record for tcp/22", timeoutMs: 15_000, intervalMs: 250 });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(lines()).toEqual([]);
  }, 60_000);

  let logId = "";
  it("`network log create --event DROP` on the group: a dropped flow is a line naming the port, the group and the log; an admitted one is not", async () => {
    const changed = logsChangedCount();
    const log = await openstack(["network", "log", "create", "--resource-type", "security_group", "--resource", web.id, "--event", "DROP", "log-web"]);
    logId = (log.ID ?? log.id) as string;
    expect(log).toMatchObject({ "Event": "DROP", "Enabled": true });
    // Its change notice makes the adapter read the logs at once (its own interval is 600 s here).
    await eventually(async () => logsChangedCount() > changed, { what: "the adapter reads the new log", timeoutMs: 20_000, intervalMs: 100 });
    expect(await lab.probeTcp("client", "vm-web", 80)).toBe("open");
    const line = await eventually(async () => {
      await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 });
      return lines().find((l) => l.dst_port === 22);
    }, { what: "a network log line for tcp/22", timeoutMs: 20_000, intervalMs: 200 });
    expect(line).toMatchObject({
      event: "DROP", port_id: webPort.id, security_group_id: web.id, security_group_ids: [web.id], log_ids: [logId],
      direction: "ingress", src: "198.18.1.10", dst: "198.18.1.21", protocol: 6, dst_port: 22, decision: "default-deny", host: "hv1",
    });
    expect(lines().filter((l) => l.dst_port === 80)).toEqual([]);
  }, 90_000);

  it("`network log delete`: drops still reach `palisadectl flows`, and no line is written any more", async () => {
    expect(logId, "needs the log (the previous test)").not.toBe("");
    const changed = logsChangedCount();
    await openstack(["network", "log", "delete", logId], { json: false });
    await eventually(async () => logsChangedCount() > changed, { what: "the adapter reads the deletion", timeoutMs: 20_000, intervalMs: 100 });
    const before = lines().length;
    const since = Date.now();
    await eventually(async () => {
      await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 });
      return (await denyRecords(22, since)).length > 0;
    }, { what: "a new deny record for tcp/22 in palisadectl flows", timeoutMs: 20_000, intervalMs: 200 });
    // The adapter's stream gets the same records as palisadectl: give it time, then nothing new.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(lines().slice(before)).toEqual([]);
  }, 90_000);

  it("`network log create --target PORT --event ACCEPT`: an admitted flow is a line naming the group whose rule admitted it; drops are not", async () => {
    const changed = logsChangedCount();
    const log = await openstack(["network", "log", "create", "--resource-type", "security_group", "--target", webPort.id, "--event", "ACCEPT", "log-web-accept"]);
    const id = (log.ID ?? log.id) as string;
    await eventually(async () => logsChangedCount() > changed, { what: "the adapter reads the new log", timeoutMs: 20_000, intervalMs: 100 });
    const before = lines().length;
    const line = await eventually(async () => {
      expect(await lab.probeTcp("client", "vm-web", 80)).toBe("open");
      await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 });
      return lines().slice(before).find((l) => l.dst_port === 80);
    }, { what: "a network log line for tcp/80", timeoutMs: 20_000, intervalMs: 200 });
    expect(line).toMatchObject({
      event: "ACCEPT", port_id: webPort.id, security_group_id: web.id, log_ids: [id], direction: "ingress", dst_port: 80, decision: "rule", profile: web.id, rule_index: 0,
    });
    await new Promise((r) => setTimeout(r, 2_000));
    expect(lines().slice(before).filter((l) => l.event !== "ACCEPT" || l.dst_port !== 80)).toEqual([]);
  }, 90_000);
});
