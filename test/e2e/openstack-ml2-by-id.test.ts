// Immediate changes by id (issue #22 item 2, DESIGN §11.11 "Change
// notices"): the Palisade ML2 mechanism driver in the real neutron-server
// names what each committed change touched, and palisade-openstack fetches
// those objects by id. The adapter reaches Neutron through a small proxy
// that, after the initial sync, REFUSES every listing (a collection GET not
// filtered by id: whole listings, the revisions feed, changed_since), and
// its own polls are 10 minutes apart: a port created, a rule added and
// removed, a port's groups changed must each still be enforced on the host,
// so they went by id.
import { createServer, request as httpRequest, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../lab/etcd-process.js";
import type { Lab } from "../lab/lab.js";
import type { NeutronAdmin } from "../lab/neutron-process.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startMl2Stack, type Ml2Stack } from "../support/ml2-stack.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A forwarding proxy to Neutron that can refuse listings; it records what it refused and what it let through. */
async function listingRefuser(target: string) {
  const to = new URL(target);
  const state = { refuse: false, refused: [] as string[], passed: [] as string[] };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    // /v2.0/<collection> alone is a listing; ?id=… names objects; /v2.0/ports/<id>/bindings is one port's.
    const listing = req.method === "GET" && /^\/v2\.0\/[a-z_-]+\/?$/.test(url.pathname) && !url.searchParams.has("id");
    if (state.refuse && listing) {
      state.refused.push(`${req.method} ${req.url}`);
      res.writeHead(503, { "content-type": "application/json" }).end(`{"error":"listings refused by the test's proxy"}`);
      return;
    }
    if (state.refuse) state.passed.push(`${req.method} ${req.url}`);
    const up = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", (e) => res.writeHead(502).end(String(e)));
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${port}`, state, close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }) };
}

let stack: Ml2Stack;
let lab: Lab;
let api: NeutronAdmin;
let proxy: Awaited<ReturnType<typeof listingRefuser>> | undefined;
let net: { id: string; subnets: string[] };
let web: Json;
let ssh: Json;
let open: Json;

const portOf = async (id: string): Promise<Json> => (await api.request("GET", `/ports/${id}`)).port;

describe("changes by id: the adapter fetches what Neutron's notices name, and lists nothing", () => {
  beforeAll(async () => {
    stack = await startMl2Stack({
      prefix: `${uniqueName("ml2id")}-`, etcd: inject("etcdUrl"),
      adapterNeutronUrl: async (url) => (proxy = await listingRefuser(url)).url,
      seed: async (a) => {
        net = await a.network("net-byid", "198.18.1.0/24");
        web = await a.group("web");
        await a.rule(web.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
        ssh = await a.group("ssh");
        await a.rule(ssh.id, { protocol: "tcp", port_range_min: 22, port_range_max: 22 });
        open = await a.group("open");
        await a.rule(open.id, { protocol: "tcp" });
      },
    });
    ({ lab, api } = stack);
    // A client VM (the probes' source), ACTIVE before listings are refused.
    const client = await api.port({ network_id: net.id, device_id: "vm-client", "binding:host_id": "hv1", security_groups: [open.id], fixed_ips: [{ subnet_id: net.subnets[0], ip_address: "198.18.1.10" }] });
    await lab.addWorkload("hv1", { name: "client", iface: `tap${client.id.slice(0, 11)}`, host: 10, mac: client.mac_address });
    await eventually(async () => (await portOf(client.id)).status === "ACTIVE", { what: "the client port ACTIVE", timeoutMs: 30_000, intervalMs: 100 });
    proxy!.state.refuse = true;
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    await proxy?.close();
  });

  it("a port created, a rule added and deleted, a port's groups changed: each enforced on the host with every listing refused", async () => {
    // A new port: its endpoint is written from the port fetched by id, so it goes ACTIVE once plugged.
    const p = await api.port({ network_id: net.id, device_id: "vm-web", "binding:host_id": "hv1", security_groups: [web.id], fixed_ips: [{ subnet_id: net.subnets[0], ip_address: "198.18.1.21" }] });
    await lab.addWorkload("hv1", { name: "vm-web", iface: `tap${p.id.slice(0, 11)}`, host: 21, mac: p.mac_address });
    await lab.listen("vm-web", [22, 80, 8080]);
    await eventually(async () => (await portOf(p.id)).status === "ACTIVE", { what: "the new port ACTIVE", timeoutMs: 30_000, intervalMs: 100 });
    expect(await lab.probeTcp("client", "vm-web", 80)).toBe("open");
    expect(await lab.probeTcp("client", "vm-web", 8080, { timeoutMs: 300 })).toBe("timeout");

    // A rule added: its notice names its group, fetched by id.
    let t0 = Date.now();
    const rule = await api.rule(web.id, { protocol: "tcp", port_range_min: 8080, port_range_max: 8080 });
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 8080, { timeoutMs: 300 })) === "open", { what: "tcp/8080 admitted", timeoutMs: 20_000, intervalMs: 100 });
    console.log(`by id: rule added -> enforced: ${Date.now() - t0} ms`);
    // Deleted: the rule cannot be fetched any more, its group can.
    await api.request("DELETE", `/security-group-rules/${rule.id}`);
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 8080, { timeoutMs: 300 })) === "timeout", { what: "tcp/8080 closed again", timeoutMs: 20_000, intervalMs: 100 });

    // A port's groups changed.
    expect(await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })).toBe("timeout");
    t0 = Date.now();
    await api.updatePort(p.id, { security_groups: [web.id, ssh.id] });
    await eventually(async () => (await lab.probeTcp("client", "vm-web", 22, { timeoutMs: 300 })) === "open", { what: "tcp/22 admitted by the port's new group", timeoutMs: 20_000, intervalMs: 100 });
    console.log(`by id: port's groups changed -> enforced: ${Date.now() - t0} ms`);

    // Nothing was listed: every read since went by id.
    expect(proxy!.state.refused).toEqual([]);
    expect(proxy!.state.passed.some((r) => /^GET \/v2\.0\/ports\?.*id=/.test(r))).toBe(true);
    expect(proxy!.state.passed.some((r) => /^GET \/v2\.0\/security-groups\?.*id=/.test(r))).toBe(true);
  }, 120_000);
});
