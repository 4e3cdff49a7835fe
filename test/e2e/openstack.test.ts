// OpenStack end to end on the namespace lab: Neutron's `default` group and a
// `web` group (test/fixtures/openstack/security-groups.json, as the Neutron
// API returns them), three VMs on two hypervisors, ports as Neutron lists
// them, palisade-openstack sync, real drivers, real connections.
//
//   vm-a  hv1  groups default + web
//   vm-b  hv2  group  default
//   vm-c  hv2  group  web
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { packageRoot } from "../../services/runtime/package-root.js";
import { createLab, type Lab, type Workload } from "../lab/lab.js";
import { BIN, eventually, palisadectl, requireBuild, startControllerProcess, uniqueName } from "../support/binaries.js";

const DEFAULT_SG = "a3c4e6f8-1b2d-4e5f-8a9b-0c1d2e3f4a5b";
const WEB_SG = "5e7d9c1b-3a2f-4d6e-9b8a-7c6d5e4f3a2b";
const VMS = [
  { name: "vm-a", hv: "hv1", host: 21, port: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", device: "11111111-aaaa-4bbb-8ccc-000000000001", groups: [DEFAULT_SG, WEB_SG] },
  { name: "vm-b", hv: "hv2", host: 22, port: "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", device: "11111111-aaaa-4bbb-8ccc-000000000002", groups: [DEFAULT_SG] },
  { name: "vm-c", hv: "hv2", host: 23, port: "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", device: "11111111-aaaa-4bbb-8ccc-000000000003", groups: [WEB_SG] },
];

const prefix = `${uniqueName("os")}-`;
const dir = mkdtempSync(join(tmpdir(), "palisade-os-e2e-"));
const socket = join(dir, "controller.sock");
const addr = `unix:${socket}`;
const groupsFile = join(packageRoot(), "test/fixtures/openstack/security-groups.json");
let lab: Lab;
let controller: ResultPromise;

/** A port exactly as GET /v2.0/ports returns it to an admin. */
function neutronPort(vm: (typeof VMS)[number], w: Workload, over: Record<string, unknown> = {}) {
  return {
    id: vm.port, name: "", network_id: "7d3f1a2b-0c9e-4d8f-a6b5-c4d3e2f1a0b9", tenant_id: "8f3c1d2e4b5a49c6a7d8e9f0a1b2c3d4",
    project_id: "8f3c1d2e4b5a49c6a7d8e9f0a1b2c3d4", mac_address: w.mac, admin_state_up: true, status: "ACTIVE",
    device_id: vm.device, device_owner: "compute:nova", "binding:host_id": vm.hv, "binding:vif_type": "tap", "binding:vnic_type": "normal",
    "binding:profile": {}, "binding:vif_details": {}, fixed_ips: [
      { subnet_id: "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", ip_address: w.ipv4 },
      { subnet_id: "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e", ip_address: w.ipv6 },
    ], allowed_address_pairs: [], extra_dhcp_opts: [], security_groups: vm.groups, port_security_enabled: true,
    description: "", tags: [], created_at: "2026-11-22T10:00:00Z", updated_at: "2026-11-22T10:00:00Z", revision_number: 3,
    ...over,
  };
}

async function sync(ports: unknown[]): Promise<string> {
  const portsFile = join(dir, "ports.json");
  writeFileSync(portsFile, JSON.stringify({ ports }));
  const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "sync", "--security-groups", groupsFile, "--ports", portsFile], { reject: false });
  expect(r.exitCode, String(r.stderr)).toBe(0);
  const w = await palisadectl(addr, ["wait", "--timeout", "30"]);
  expect(w.code, w.stderr).toBe(0);
  return String(r.stdout);
}

function ports(over: Record<string, Record<string, unknown>> = {}) {
  return VMS.map((vm) => neutronPort(vm, lab.workloads.get(vm.name)!, over[vm.name]));
}

describe("OpenStack: default and web groups across two hypervisors", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(prefix);
    await lab.addHypervisorPair();
    for (const vm of VMS) await lab.addWorkload(vm.hv, { name: vm.name, iface: `tap${vm.port.slice(0, 11)}`, host: vm.host });
    for (const vm of VMS) await lab.listen(vm.name, [22, 80, 8080]);

    controller = startControllerProcess({ etcd: inject("etcdUrl"), listen: `127.0.0.1:0,${addr}`, prefix: `/${prefix}os`, logFile: join(dir, "controller.log") });
    await eventually(async () => (await palisadectl(addr, ["status"])).code === 0, { what: "controller up" });
    for (const hv of ["hv1", "hv2"]) {
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", hv], { logFile: join(dir, `driver-${hv}.log`) });
    }
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.filter((h: { in_sync: boolean }) => h.in_sync).length === 2;
    }, { what: "both drivers in sync", timeoutMs: 30_000 });
    await sync(ports());
  }, 120_000);

  afterAll(async () => {
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("web admits tcp/80 from anywhere, on both families", async () => {
    expect(await lab.probeTcp("vm-b", "vm-a", 80)).toBe("open");
    expect(await lab.probeTcp("vm-c", "vm-a", 80)).toBe("open");
    expect(await lab.probeTcp("vm-b", "vm-a", 80, { family: 6 })).toBe("open");
    expect(await lab.probeTcp("vm-a", "vm-c", 80)).toBe("open");
  });

  it("the default group admits everything from its own members, and only from them", async () => {
    expect(await lab.probeTcp("vm-b", "vm-a", 22)).toBe("open");
    expect(await lab.probeTcp("vm-a", "vm-b", 8080)).toBe("open");
    expect(await lab.probeTcp("vm-a", "vm-b", 8080, { family: 6 })).toBe("open");
    // vm-c is not in default: web opens 80 and 443 only.
    expect(await lab.probeTcp("vm-c", "vm-a", 22)).toBe("timeout");
    expect(await lab.probeTcp("vm-c", "vm-a", 22, { family: 6 })).toBe("timeout");
    expect(await lab.probeTcp("vm-c", "vm-b", 8080)).toBe("timeout");
  });

  it("palisade-openstack status reports the ports ACTIVE", async () => {
    await eventually(async () => {
      const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "status", "-o", "json"], { reject: false });
      const rows = JSON.parse(String(r.stdout)).ports as { port_id: string; status: string }[];
      return rows.length === 3 && rows.every((row) => row.status === "ACTIVE");
    }, { what: "all ports ACTIVE", timeoutMs: 20_000 });
  });

  it("Neutron changes follow: a group removed from a port closes its traffic; admin-down shows DOWN and drops", async () => {
    // vm-a leaves web: vm-c (web only) loses port 80 to it.
    expect(await sync(ports({ "vm-a": { security_groups: [DEFAULT_SG] } }))).toMatch(/^synced: 0 created, 1 updated, 0 deleted, .* in 1 transaction\(s\)/m);
    expect(await lab.probeTcp("vm-c", "vm-a", 80)).toBe("timeout");
    expect(await lab.probeTcp("vm-b", "vm-a", 80)).toBe("open"); // still default-to-default

    await sync(ports({ "vm-a": { security_groups: [DEFAULT_SG] }, "vm-b": { admin_state_up: false } }));
    expect(await lab.probeTcp("vm-a", "vm-b", 8080)).toBe("timeout");
    const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "status"], { reject: false });
    expect(String(r.stdout)).toMatch(new RegExp(`^${VMS[1]!.port}\\s+DOWN\\s+hv2\\s+tap1b2c3d4e-5f\\s+admin_state_up is false$`, "m"));
    expect(String(r.stdout)).toMatch(new RegExp(`^${VMS[0]!.port}\\s+ACTIVE\\s+hv1`, "m"));
  });
});
