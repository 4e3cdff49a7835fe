// The Palisade ML2 mechanism driver (services/openstack/ml2, DESIGN §11.11)
// loaded by the real neutron-server, talking to palisade-openstack watch's
// ML2 endpoint; the controller, a driver on a lab hypervisor, real packets.
//
//   - a port on a host without a Palisade driver does not bind
//     (binding_failed), nor on any host while the adapter is down, nor an
//     SR-IOV port; the network's own (DHCP) port binds without one;
//   - a port on a host with a driver binds, and stays DOWN (its
//     provisioning block held) until Palisade has programmed it; when
//     Neutron says ACTIVE, its policy is already enforced;
//   - a block held while the adapter is down is lifted once it is back;
//   - after ACTIVE, a host whose driver is gone makes its ports DOWN in
//     Neutron (after the adapter's hold), ACTIVE again when it is back;
//   - a rule change reaches the host in seconds although the adapter's own
//     poll interval is 10 minutes: Neutron's change notice made it poll;
//   - neutron-server restarted: a block held before the restart is lifted
//     after it (the blocks are in Neutron's database, the driver reads them
//     back), and an ACTIVE port stays ACTIVE.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Lab } from "../lab/lab.js";
import type { NeutronAdmin } from "../lab/neutron-process.js";
import { eventually, palisadectl, uniqueName } from "../support/binaries.js";
import { startMl2Stack, type Ml2Stack } from "../support/ml2-stack.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let stack: Ml2Stack;
let lab: Lab;
let api: NeutronAdmin;
let addr: string;
let net: { id: string; subnets: string[] };
let web: Json;
let client: Json;

const portOf = async (id: string): Promise<Json> => (await api.request("GET", `/ports/${id}`)).port;

async function newPort(device: string, ip: string, host: string, groups: string[]): Promise<Json> {
  return api.port({ network_id: net.id, device_id: device, "binding:host_id": host, security_groups: groups, fixed_ips: [{ subnet_id: net.subnets[0], ip_address: ip }] });
}

describe("the Palisade ML2 mechanism driver in the real neutron-server", () => {
  beforeAll(async () => {
    let open: Json = {};
    stack = await startMl2Stack({
      prefix: `${uniqueName("ml2")}-`, etcd: inject("etcdUrl"),
      seed: async (a) => {
        net = await a.network("net-ml2", "198.18.1.0/24");
        web = await a.group("web");
        await a.rule(web.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
        open = await a.group("open");
        await a.rule(open.id, { protocol: "tcp" });
      },
    });
    ({ lab, api, addr } = stack);

    // A client VM (the probes' source), ACTIVE before the tests start.
    client = await newPort("vm-client", "198.18.1.10", "hv1", [open.id]);
    await lab.addWorkload("hv1", { name: "client", iface: `tap${client.id.slice(0, 11)}`, host: 10, mac: client.mac_address });
    await eventually(async () => (await portOf(client.id)).status === "ACTIVE", { what: "the client port ACTIVE", timeoutMs: 30_000, intervalMs: 100 });
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it("a port on a host with no Palisade driver does not bind (binding_failed), as for a dead agent; nor an SR-IOV port; a DHCP port binds without one", async () => {
    const p = await newPort("vm-nowhere", "198.18.1.30", "hv-without-palisade", [web.id]);
    const got = await portOf(p.id);
    expect(got["binding:vif_type"]).toBe("binding_failed");
    expect(got.status).toBe("DOWN");
    // The network's own ports are no endpoints: a network node needs no Palisade driver.
    const dhcp = await api.port({ network_id: net.id, device_id: "dhcp-1", device_owner: "network:dhcp", "binding:host_id": "hv-without-palisade" });
    expect((await portOf(dhcp.id))["binding:vif_type"]).toBe("bridge");
    // Not a tap Palisade polices (SR-IOV): not bound by Palisade, even on a host with a driver.
    const sriov = await api.port({ network_id: net.id, device_id: "vm-sriov2", "binding:host_id": "hv1", "binding:vnic_type": "direct", security_groups: [web.id] });
    expect((await portOf(sriov.id))["binding:vif_type"]).toBe("binding_failed");
  });

  it("a port binds on a host with a driver (bridge, port filter) and stays DOWN until its policy is enforced there; ACTIVE means enforced", async () => {
    const p = await newPort("vm-web", "198.18.1.21", "hv1", [web.id]);
    const bound = await portOf(p.id);
    expect(bound["binding:vif_type"]).toBe("bridge");
    expect(bound["binding:vif_details"]).toMatchObject({ port_filter: true });
    // No interface on the host yet: the endpoint exists but cannot be
    // programmed up, so the block holds.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await portOf(p.id)).status).toBe("DOWN");
    // Nova plugs the VM: the tap appears.
    await lab.addWorkload("hv1", { name: "vm-web", iface: `tap${p.id.slice(0, 11)}`, host: 21, mac: p.mac_address });
    await lab.listen("vm-web", [22, 80]);
    await eventually(async () => (await portOf(p.id)).status === "ACTIVE", { what: "the port ACTIVE", timeoutMs: 30_000, intervalMs: 50 });
    // The moment Neutron says ACTIVE, the group's policy is in force: 80 open, 22 not.
    expect(await lab.probeTcp("client", "vm-web", 80)).toBe("open");
    expect(await lab.probeTcp("client", "vm-web", 22)).toBe("timeout");
  }, 60_000);

  it("a rule change is enforced within seconds: Neutron's change notice makes the adapter poll now (its own interval is 10 minutes)", async () => {
    const started = Date.now();
    const rule = await api.rule(web.id, { protocol: "tcp", port_range_min: 22, port_range_max: 22 });
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })) === "open", { what: "tcp/22 admitted", timeoutMs: 20_000, intervalMs: 100 });
    const took = Date.now() - started;
    console.log(`rule added -> enforced on the host: ${took} ms`);
    await api.request("DELETE", `/security-group-rules/${rule.id}`);
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })) === "timeout", { what: "tcp/22 closed again", timeoutMs: 20_000, intervalMs: 100 });
  }, 60_000);

  it("while the adapter is down nothing binds and no block is lifted; back, the held port goes ACTIVE", async () => {
    // A port bound while the adapter is up, its VM not plugged yet: blocked.
    const held = await newPort("vm-held", "198.18.1.22", "hv1", [web.id]);
    expect((await portOf(held.id))["binding:vif_type"]).toBe("bridge");
    await eventually(async () => {
      const st = await palisadectl(addr, ["status", "-o", "json"]);
      return (JSON.parse(st.stdout).endpoints as { endpoint: string }[]).some((e) => e.endpoint.endsWith(`/${held.id}`));
    }, { what: "the held port's endpoint written", timeoutMs: 20_000 });
    await stack.stopWatch();
    // The VM is plugged and Palisade programs it (the adapter wrote its
    // endpoint before it stopped), but no one can say so to Neutron.
    await lab.addWorkload("hv1", { name: "vm-held", iface: `tap${held.id.slice(0, 11)}`, host: 22, mac: held.mac_address });
    const refused = await newPort("vm-late", "198.18.1.23", "hv1", [web.id]);
    expect((await portOf(refused.id))["binding:vif_type"]).toBe("binding_failed");
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await portOf(held.id)).status).toBe("DOWN");
    stack.startWatch("watch-2.log");
    await eventually(async () => (await portOf(held.id)).status === "ACTIVE", { what: "the held port ACTIVE", timeoutMs: 30_000, intervalMs: 100 });
  }, 90_000);

  it("neutron-server restarted: a port blocked before the restart goes ACTIVE after it once its VM is plugged; an ACTIVE port stays ACTIVE", async () => {
    const held = await newPort("vm-restart", "198.18.1.24", "hv1", [web.id]);
    expect((await portOf(held.id))["binding:vif_type"]).toBe("bridge");
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await portOf(held.id)).status).toBe("DOWN");
    await stack.neutron.restart();
    // Still held after the restart (no VM yet): the block survived it.
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await portOf(held.id)).status).toBe("DOWN");
    expect((await portOf(client.id)).status).toBe("ACTIVE");
    // Nova plugs the VM: the restarted server's driver lifts the block it read back.
    await lab.addWorkload("hv1", { name: "vm-restart", iface: `tap${held.id.slice(0, 11)}`, host: 24, mac: held.mac_address });
    await lab.listen("vm-restart", [80]);
    await eventually(async () => (await portOf(held.id)).status === "ACTIVE", { what: "the port blocked across the restart ACTIVE", timeoutMs: 30_000, intervalMs: 100 });
    expect(await lab.probeTcp("client", "vm-restart", 80)).toBe("open");
  }, 120_000);

  it("after ACTIVE, Palisade's status follows into Neutron: the host's driver gone, the port goes DOWN (after the adapter's hold); back, ACTIVE", async () => {
    const web1 = (await api.listAll("ports", "?device_id=vm-web")).ports[0] as Json;
    expect(web1.status).toBe("ACTIVE");
    stack.driver.kill("SIGTERM");
    await stack.driver;
    await eventually(async () => (await portOf(web1.id)).status === "DOWN", { what: "the port DOWN in Neutron", timeoutMs: 30_000, intervalMs: 100 });
    stack.startDriver("driver-hv1-2.log");
    await eventually(async () => (await portOf(web1.id)).status === "ACTIVE", { what: "the port ACTIVE again", timeoutMs: 30_000, intervalMs: 100 });
  }, 90_000);
});
