// The operator tier (DESIGN §11.12) end to end: the real neutron-server, a
// tenant's security group, palisade-openstack watch --operator-policy, a
// driver on a lab hypervisor, real packets.
//
//   hv1: client (198.18.1.10, the "monitoring" net 198.18.1.10/32), server (198.18.1.21)
//   the tenant's group "mail" on server: TCP 25 and 80 from anywhere
//   operator, before: deny TCP 25 inbound, every port
//   operator, after, on the network: allow TCP 9100 from the monitoring net, deny other TCP
//
// An operator deny beats the tenant's allow (25 dropped; trace and the flow
// record name the operator profile); the after profile decides only what no
// group decided (80 still open by the group, 9100 open by the operator, 22
// dropped by it); the entry removed and SIGHUP: 25 passes; a bad file on
// SIGHUP changes nothing; `sync` with a bad file exits 1, naming the entry.
import { execa } from "execa";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, eventually, palisadectl } from "../support/binaries.js";
import { startOpenStackLab, type OpenStackLab } from "../support/openstack-lab.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const DENY_SMTP = "openstack-operator-no-smtp";
const MONITORING = "openstack-operator-monitoring";
let os: OpenStackLab;
let watch: ResultPromise;
let policyFile: string;
let net: { id: string; subnets: string[] };
let mail: Json;

const before = { id: DENY_SMTP, placement: "before", select: "all", inbound_rules: [{ action: "deny", protocol: "tcp", dst_ports: [25] }] };
const after = () => ({
  id: MONITORING, placement: "after", select: { networks: [net.id] },
  inbound_rules: [{ action: "allow", protocol: "tcp", src_net: "198.18.1.10/32", dst_ports: [9100] }, { action: "deny", protocol: "tcp" }],
});
const writePolicy = (entries: unknown[]) => writeFileSync(policyFile, JSON.stringify({ operator_profiles: entries }, null, 1));

async function trace(port: number) {
  const r = await palisadectl(os.addr, ["trace", "--from", "198.18.1.10", "--to", "198.18.1.21", "--protocol", "tcp", "--dst-port", String(port), "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  const t = JSON.parse(r.stdout) as { verdict: string; steps: { direction: string; verdict: string; profile?: string; decision: string }[] };
  return { verdict: t.verdict, inbound: t.steps.find((s) => s.direction === "inbound")! };
}

/** SIGHUP, then wait for the watch to log that it read the file again (count of `what` grows). */
async function reload(what: RegExp): Promise<void> {
  const log = join(os.dir, "watch.log");
  const count = () => (readFileSync(log, "utf8").match(new RegExp(what.source, "g")) ?? []).length;
  const was = count();
  watch.kill("SIGHUP");
  await eventually(async () => count() > was, { what: `the watch logs ${what}`, timeoutMs: 20_000, intervalMs: 100 });
}

describe("the operator tier with the real neutron-server", () => {
  beforeAll(async () => {
    os = await startOpenStackLab({ name: "osop", hypervisors: ["hv1"] });
    const { api, lab } = os;
    policyFile = join(os.dir, "operator-policy.json");
    net = await api.network("net-op", "198.18.1.0/24");
    // The tenant opens SMTP (and web) to anyone.
    mail = await api.group("mail");
    await api.rule(mail.id, { protocol: "tcp", port_range_min: 25, port_range_max: 25 });
    await api.rule(mail.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
    const client = await api.group("client"); // egress only (Neutron's defaults)
    const port = (device: string, ip: string, groups: string[]) => api.port({
      network_id: net.id, device_id: device, "binding:host_id": "hv1", security_groups: groups, fixed_ips: [{ subnet_id: net.subnets[0], ip_address: ip }],
    });
    const clientPort = await port("vm-client", "198.18.1.10", [client.id]);
    const serverPort = await port("vm-server", "198.18.1.21", [mail.id]);
    await lab.addWorkload("hv1", { name: "client", iface: `tap${clientPort.id.slice(0, 11)}`, host: 10, mac: clientPort.mac_address });
    await lab.addWorkload("hv1", { name: "server", iface: `tap${serverPort.id.slice(0, 11)}`, host: 21, mac: serverPort.mac_address });
    await lab.listen("server", [22, 25, 80, 9100]);

    writePolicy([before, after()]);
    watch = os.startWatch(["--interval", "1", "--operator-policy", policyFile]);
    await eventually(async () => (await os.endpointKeys()).length === 2, { what: "both ports are endpoints", timeoutMs: 30_000 });
    await os.allApplied();
  }, 180_000);

  afterAll(async () => {
    await os?.stop();
  });

  it("an operator deny beats a tenant allow: TCP 25 dropped, and trace and the flow record name the operator profile", async () => {
    expect(await os.lab.probeTcp("client", "server", 25)).toBe("timeout");
    const t = await trace(25);
    expect(t.verdict).toBe("deny");
    expect(t.inbound).toMatchObject({ verdict: "deny", profile: DENY_SMTP });
    const rec = await eventually(async () => {
      const r = await palisadectl(os.addr, ["flows", "-o", "json", "--verdict", "deny"]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { dst_port: number | null; profile: string | null }[]).find((x) => x.dst_port === 25);
    }, { what: "a deny flow record for tcp/25", timeoutMs: 15_000, intervalMs: 250 });
    expect(rec!.profile).toBe(DENY_SMTP);
  }, 60_000);

  it("an after profile decides only what no group decided: 80 by the group, 9100 admitted and 22 dropped by the operator", async () => {
    expect(await os.lab.probeTcp("client", "server", 80)).toBe("open");
    expect((await trace(80)).inbound).toMatchObject({ verdict: "allow", profile: mail.id });
    expect(await os.lab.probeTcp("client", "server", 9100)).toBe("open");
    expect((await trace(9100)).inbound).toMatchObject({ verdict: "allow", profile: MONITORING });
    expect(await os.lab.probeTcp("client", "server", 22)).toBe("timeout");
    expect((await trace(22)).inbound).toMatchObject({ verdict: "deny", profile: MONITORING });
  }, 60_000);

  it("the entry removed and SIGHUP: TCP 25 passes (the profile is deleted); a bad file then changes nothing", async () => {
    writePolicy([after()]);
    await reload(/operator policy reloaded/);
    await eventually(async () => (await os.lab.probeTcp("client", "server", 25, { timeoutMs: 500 })) === "open", { what: "tcp/25 admitted", timeoutMs: 20_000, intervalMs: 200 });
    expect((await trace(25)).inbound).toMatchObject({ verdict: "allow", profile: mail.id });
    const profiles = await palisadectl(os.addr, ["get", "profiles", "-o", "json"]);
    expect(profiles.stdout).not.toContain(DENY_SMTP);
    expect(profiles.stdout).toContain(MONITORING);

    // A bad file: refused, the last good policy stays.
    writeFileSync(policyFile, JSON.stringify({ operator_profiles: [{ ...before, placement: "first" }] }));
    await reload(/operator policy refused/);
    expect(readFileSync(join(os.dir, "watch.log"), "utf8")).toContain(`operator_profiles[0] (${DENY_SMTP}): placement: 'first' is not before or after`);
    await new Promise((r) => setTimeout(r, 2_000));
    await os.allApplied();
    expect(await os.lab.probeTcp("client", "server", 25)).toBe("open");
    expect(await os.lab.probeTcp("client", "server", 9100)).toBe("open");
    expect(watch.exitCode).toBeNull(); // still running
  }, 60_000);

  it("sync with a bad file exits 1 naming the entry, and writes nothing", async () => {
    const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", os.addr, "sync", "--security-groups", "/dev/null", "--ports", "/dev/null", "--operator-policy", policyFile], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toContain(`--operator-policy ${policyFile}: refused (1 problem(s), nothing written): operator_profiles[0] (${DENY_SMTP}): placement: 'first' is not before or after`);
  });
});
