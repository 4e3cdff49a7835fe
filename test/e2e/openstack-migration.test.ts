// Live migration without a window (DESIGN §11.6), end to end: a real
// Neutron (test/lab/neutron-process.ts) driven through its port-bindings API
// as Nova drives it, palisade-openstack watch, the controller, a driver on
// each of two hypervisor namespaces, and a client probing the migrating VM
// continuously across the switch-over.
//
//   hv1: client (198.18.1.10), vm (198.18.1.21, the source)
//   hv2: vm's replica (same address and MAC, the destination), down until the move
//
// Nova's order: create the destination binding (INACTIVE) → the guest starts
// running on the destination → activate that binding → delete the source
// binding. The guest is already running at the destination when activation
// happens, so the destination must be programmed while its binding is still
// inactive: the test moves the guest right after `activate` returns and
// requires every probe to connect.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLab, type Lab } from "../lab/lab.js";
import { NeutronAdmin, startNeutron, type NeutronProcess } from "../lab/neutron-process.js";
import { BIN, eventually, palisadectl, requireBuild, startControllerProcess, uniqueName } from "../support/binaries.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const prefix = `${uniqueName("osm")}-`;
const dir = mkdtempSync(join(tmpdir(), "palisade-os-migration-"));
const socket = join(dir, "controller.sock");
const addr = `unix:${socket}`;
let lab: Lab;
let neutron: NeutronProcess;
let api: NeutronAdmin;
let controller: ResultPromise;
let watch: ResultPromise;
let vmPort: Json;

/** The endpoints palisadectl status reports, as "host/orchestrator/workload/id". */
async function endpointKeys(): Promise<string[]> {
  const s = await palisadectl(addr, ["status", "-o", "json"]);
  return (JSON.parse(s.stdout).endpoints as { endpoint: string }[]).map((e) => e.endpoint);
}
const hostsOfVm = async () => (await endpointKeys()).filter((k) => k.endsWith(`/${vmPort.id}`)).map((k) => k.split("/")[0]).sort();

async function allApplied(): Promise<void> {
  const w = await palisadectl(addr, ["wait", "--timeout", "30"]);
  expect(w.code, w.stderr).toBe(0);
}

describe("OpenStack live migration across two hypervisors, with the real Neutron bindings API", () => {
  beforeAll(async () => {
    requireBuild();
    neutron = await startNeutron();
    api = new NeutronAdmin(neutron.url);
    lab = createLab(prefix);
    await lab.addHypervisor("hv1");
    await lab.addHypervisor("hv2");
    await lab.link("hv1", "hv2");

    const net = await api.network("net-m", "198.18.1.0/24");
    const web = await api.group("web");
    await api.rule(web.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
    const port = (device: string, ip: string) => api.port({
      network_id: net.id, device_id: device, "binding:host_id": "hv1", security_groups: [web.id], fixed_ips: [{ subnet_id: net.subnets[0], ip_address: ip }],
    });
    const clientPort = await port("vm-client", "198.18.1.10");
    vmPort = await port("vm-migrating", "198.18.1.21");
    await lab.addWorkload("hv1", { name: "client", iface: `tap${clientPort.id.slice(0, 11)}`, host: 10, mac: clientPort.mac_address });
    await lab.addWorkload("hv1", { name: "vm", iface: `tap${vmPort.id.slice(0, 11)}`, host: 21, mac: vmPort.mac_address });
    const replicaNs = await lab.addReplica("hv2", "vm", "vm-dst");
    await lab.listen("vm", [80]);
    await lab.listenIn(replicaNs, [80]);

    controller = startControllerProcess({ etcd: inject("etcdUrl"), listen: `127.0.0.1:0,${addr}`, prefix: `/${prefix}osm`, logFile: join(dir, "controller.log") });
    await eventually(async () => (await palisadectl(addr, ["status"])).code === 0, { what: "controller up" });
    for (const hv of ["hv1", "hv2"]) {
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", hv], { logFile: join(dir, `driver-${hv}.log`) });
    }
    watch = execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "watch", "--neutron-url", neutron.url, "--interval", "1"], {
      reject: false, env: { OS_TOKEN: "noauth" }, stdout: { file: join(dir, "watch.log") }, stderr: { file: join(dir, "watch.log") },
    });
    await eventually(async () => (await endpointKeys()).length === 2, { what: "both ports are endpoints", timeoutMs: 30_000 });
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.filter((h: { in_sync: boolean }) => h.in_sync).length === 2;
    }, { what: "both drivers in sync", timeoutMs: 30_000 });
    await allApplied();
  }, 180_000);

  afterAll(async () => {
    watch?.kill("SIGTERM");
    await watch;
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
    await neutron?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the VM keeps accepting connections while it moves: the destination is programmed while its binding is inactive", async () => {
    expect(await lab.probeTcp("client", "vm", 80)).toBe("open");
    expect(await hostsOfVm()).toEqual(["hv1"]);

    // Nova, pre_live_migration: the destination binding, INACTIVE.
    await api.request("POST", `/ports/${vmPort.id}/bindings`, { binding: { host: "hv2", project_id: api.projectId, tenant_id: api.projectId } });
    await eventually(async () => (await hostsOfVm()).join() === "hv1,hv2", { what: "an endpoint on the destination", timeoutMs: 20_000 });
    expect((await api.request("GET", `/ports/${vmPort.id}`)).port["binding:host_id"]).toBe("hv1");
    await allApplied();

    // Probe continuously across the switch-over: the guest moves the moment
    // Nova activates the destination binding.
    const errorCodes: Record<number, Record<string, number>> = {};
    const probes = lab.probeLoop("client", "vm", [80], 6_000, { errorCodes });
    await new Promise((r) => setTimeout(r, 1_500));
    await api.request("PUT", `/ports/${vmPort.id}/bindings/hv2/activate`);
    await lab.moveWorkload("vm-dst");
    const counts = (await probes)[80]!;
    console.log(`probes across the migration: ${JSON.stringify(counts)}`);
    expect(counts.open).toBeGreaterThan(50);
    // A policy drop shows as a timeout (Palisade only drops; it never resets
    // or sends unreachables). One reset is the lab, not policy: the move is
    // four `ip` commands, and the two guest namespaces share no TCP state (a
    // migrated guest keeps its own), so a handshake caught in the middle may
    // be reset (seen once in a loaded CI run). Nothing else is: an
    // unreachable, say, would mean the destination was not ready.
    expect({ refused: counts.refused, timeout: counts.timeout }).toEqual({ refused: 0, timeout: 0 });
    const codes = errorCodes[80] ?? {};
    expect(Object.values(codes).reduce((a, b) => a + b, 0)).toBe(counts.error);
    expect(Object.keys(codes).filter((c) => c !== "ECONNRESET")).toEqual([]);
    expect(codes.ECONNRESET ?? 0).toBeLessThanOrEqual(1);
    // Served by the destination now: the source interface is down.
    expect((await lab.exec(lab.hypervisors.get("hv1")!.ns, "ip", ["-br", "link", "show", `tap${vmPort.id.slice(0, 11)}`]))).toMatch(/DOWN/);

    // Nova, post-migration: the source binding deleted; its endpoint goes.
    await api.request("DELETE", `/ports/${vmPort.id}/bindings/hv1`);
    await eventually(async () => (await hostsOfVm()).join() === "hv2", { what: "the source endpoint gone", timeoutMs: 20_000 });
    await allApplied();
    expect(await lab.probeTcp("client", "vm", 80)).toBe("open");
  }, 90_000);
});
