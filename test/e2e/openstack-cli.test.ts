// Issue #22 item 5: Palisade as a cloud uses it, through the real `openstack`
// command-line client (Debian's python3-openstackclient, installed by
// deploy/dev/ensure-neutron.sh) against the real neutron-server with the
// Palisade ML2 driver loaded (the stack of openstack-ml2.test.ts), the
// namespace lab and real packets. One path — network, subnet, group, rule,
// port, binding — made with the CLI alone, then:
//
//   - `port create --host` on a host without a Palisade driver:
//     binding_vif_type binding_failed;
//   - on hv1 the port binds, and `port show` says ACTIVE only once its
//     policy is enforced on the host (DOWN before its tap exists; the first
//     ACTIVE seen, a packet is admitted or dropped by the group's rules);
//   - `security group rule create` is enforced on the host (a packet passes
//     after it, not before) within a generous timeout; `rule delete`
//     closes it again. Speed is the bench's (500 ms p99), not asserted here.
//
// How the CLI reaches a Keystone-less Neutron (DESIGN §11.9): a clouds.yaml
// in the test's own directory with `auth_type: none` and Neutron's URL as
// the endpoint; Neutron's noauth pipeline makes a request with no
// X-Project-Id admin in project `fake_project_id`, which every object made
// here belongs to (`--project` would need Keystone to look the name up).
//
// Not here: an operator deny beating a tenant allow (openstack-operator.test.ts,
// through the API); `openstack network log create` (openstack-network-log.test.ts).
import { execa } from "execa";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Lab } from "../lab/lab.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startMl2Stack, type Ml2Stack } from "../support/ml2-stack.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const OPENSTACK = "/usr/bin/openstack";
const CLOUD = "palisade-lab";

let stack: Ml2Stack;
let lab: Lab;
let cloudsFile: string;
let net: Json;
let subnet: Json;
let web: Json;
let webPort: Json;
/** Set by the ACTIVE test once vm-web is plugged, ACTIVE and enforced. */
let webReady = false;

/**
 * One `openstack` command against the test's Neutron, JSON out. Only the
 * test's clouds.yaml configures it: the caller's OS_* variables (a real
 * cloud's credentials) are not passed on.
 */
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

const portShow = (id: string) => openstack(["port", "show", id]);

/** An instance port as Nova makes one (device owner compute:nova, bound to host). */
async function portCreate(name: string, ip: string, host: string, group: string): Promise<Json> {
  return openstack(["port", "create", name, "--network", net.id, "--fixed-ip", `subnet=${subnet.id},ip-address=${ip}`,
    "--security-group", group, "--host", host, "--device", name, "--device-owner", "compute:nova"]);
}

describe("the real openstack CLI against neutron-server with the Palisade ML2 driver", () => {
  beforeAll(async () => {
    stack = await startMl2Stack({ prefix: `${uniqueName("cli")}-`, etcd: inject("etcdUrl") });
    lab = stack.lab;
    cloudsFile = join(stack.dir, "clouds.yaml");
    writeFileSync(cloudsFile, `clouds:\n  ${CLOUD}:\n    auth_type: none\n    auth:\n      endpoint: ${stack.neutron.url}\n`);

    // Neutron here has no tenant network types: a flat provider network (hv1's addresses, lab.ts).
    // One call at a time: concurrent writes to the test Neutron's SQLite
    // database fail ("database is locked", HTTP 500).
    net = await openstack(["network", "create", "net-cli", "--provider-network-type", "flat", "--provider-physical-network", "phys-cli"]);
    subnet = await openstack(["subnet", "create", "sub-cli", "--network", net.id, "--subnet-range", "198.18.1.0/24", "--no-dhcp", "--gateway", "none"]);
    web = await openstack(["security", "group", "create", "web"]);
    await openstack(["security", "group", "rule", "create", web.id, "--ingress", "--ethertype", "IPv4", "--protocol", "tcp", "--dst-port", "80"]);
    const open = await openstack(["security", "group", "create", "open"]);
    await openstack(["security", "group", "rule", "create", open.id, "--ingress", "--ethertype", "IPv4", "--protocol", "tcp"]);
    expect(web.project_id).toBe("fake_project_id");

    // A client VM (the probes' source), ACTIVE before the tests start (setup:
    // polled through the REST API, cheaper than a CLI process per poll).
    const client = await portCreate("vm-client", "198.18.1.10", "hv1", open.id);
    await lab.addWorkload("hv1", { name: "client", iface: `tap${client.id.slice(0, 11)}`, host: 10, mac: client.mac_address });
    await eventually(async () => (await stack.api.request("GET", `/ports/${client.id}`)).port.status === "ACTIVE", { what: "the client port ACTIVE", timeoutMs: 60_000, intervalMs: 100 });
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it("`port create --host` on a host with no Palisade driver: binding_failed", async () => {
    const p = await portCreate("vm-nowhere", "198.18.1.30", "hv-without-palisade", web.id);
    expect(p.binding_vif_type).toBe("binding_failed");
    expect(p.status).toBe("DOWN");
  }, 90_000);

  it("`port create --host hv1` binds; `port show` says ACTIVE only once the port's policy is enforced on the host", async () => {
    webPort = await portCreate("vm-web", "198.18.1.21", "hv1", web.id);
    expect(webPort.binding_vif_type).toBe("bridge");
    expect(webPort.binding_vif_details).toMatchObject({ port_filter: true });
    // No tap on the host yet: nothing to enforce on, so not ACTIVE.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await portShow(webPort.id)).status).toBe("DOWN");
    // Nova plugs the VM.
    await lab.addWorkload("hv1", { name: "vm-web", iface: `tap${webPort.id.slice(0, 11)}`, host: 21, mac: webPort.mac_address });
    await lab.listen("vm-web", [22, 80]);
    await eventually(async () => (await portShow(webPort.id)).status === "ACTIVE", { what: "the port ACTIVE", timeoutMs: 60_000, intervalMs: 0 });
    // The first time the CLI says ACTIVE, the group's policy is in force: 80 admitted, 22 not.
    expect(await lab.probeTcp("client", "vm-web", 80)).toBe("open");
    expect(await lab.probeTcp("client", "vm-web", 22)).toBe("timeout");
    webReady = true;
  }, 120_000);

  it("`security group rule create` is enforced on the host (a packet passes after, not before); `rule delete` closes it again", async () => {
    expect(webReady, "needs vm-web, ACTIVE and enforced (the previous test)").toBe(true);
    expect(await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })).toBe("timeout");
    const started = Date.now();
    const rule = await openstack(["security", "group", "rule", "create", web.id, "--ingress", "--ethertype", "IPv4", "--protocol", "tcp", "--dst-port", "22"]);
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })) === "open", { what: "tcp/22 admitted", timeoutMs: 30_000, intervalMs: 100 });
    console.log(`openstack security group rule create (CLI start) -> enforced on the host: ${Date.now() - started} ms`);
    await openstack(["security", "group", "rule", "delete", rule.id], { json: false });
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })) === "timeout", { what: "tcp/22 closed again", timeoutMs: 30_000, intervalMs: 100 });
  }, 90_000);
});
