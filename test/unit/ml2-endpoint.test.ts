// palisade-openstack's ML2 endpoint (services/openstack/ml2-endpoint.ts,
// DESIGN §11.11): when a port counts as programmed (the provisioning block
// is lifted only then), and what the HTTP side refuses. The real
// neutron-server with the Python driver is test/e2e/openstack-ml2.test.ts.
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { EndpointState, type EndpointStatus, type HostStatus } from "../../services/contract/status.js";
import { EndpointStatus as EndpointStatusPb, HostStatus as HostStatusPb } from "../../services/gen/palisade/status/v1/status.js";
import { endpointKeyString, type Endpoint } from "../../services/model/index.js";
import { ML2_LIMITS, portAnswer, startMl2Endpoint, type Ml2Endpoint, type Ml2View } from "../../services/openstack/ml2-endpoint.js";
import { endpoint } from "../support/model.js";

const PORT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const ep = (over: Record<string, unknown> = {}): Endpoint =>
  endpoint({ host: "hv1", workload: "vm-1", id: PORT, name: "tap0a1b2c3d-4e", ipv4_nets: ["10.0.0.5"], profile_ids: ["p"], ...over });
const host = (over: Partial<HostStatus> = {}): HostStatus => HostStatusPb.fromPartial({ hostname: "hv1", connected: true, inSync: true, appliedRevision: 20, ...over });
const up = (e: Endpoint, state = EndpointState.ENDPOINT_STATE_UP): EndpointStatus => EndpointStatusPb.fromPartial({ endpointKey: endpointKeyString(e), hostname: e.host, state });

function view(o: { e?: Endpoint; revision?: number; h?: HostStatus | null; status?: EndpointStatus | null } = {}): Ml2View {
  const e = o.e ?? ep();
  const h = o.h === null ? undefined : o.h ?? host();
  const s = o.status === null ? undefined : o.status ?? up(e);
  return {
    hosts: new Map(h ? [[h.hostname, h]] : []),
    endpointsByPort: new Map([[e.id, [{ endpoint: e, revision: o.revision ?? 10 }]]]),
    statuses: new Map(s ? [[s.endpointKey, s]] : []),
  };
}

describe("portAnswer: programmed only when the policy is in force on that host", () => {
  it("endpoint up, host in sync at or past the endpoint's revision: programmed, ACTIVE", () => {
    expect(portAnswer(view(), PORT, "hv1")).toMatchObject({ programmed: true, status: "ACTIVE" });
    expect(portAnswer(view({ revision: 20 }), PORT, "hv1").programmed).toBe(true);
  });

  it.each<[string, Parameters<typeof view>[0], RegExp]>([
    ["the host has not applied the revision that wrote the endpoint", { revision: 21 }, /applied revision 20, the endpoint was written at 21/],
    ["no driver connected", { h: host({ connected: false }) }, /no driver connected/],
    ["no host status at all", { h: null }, /no driver connected/],
    ["the host's last apply failed", { h: host({ lastError: "iptables-restore: exit 1" }) }, /iptables-restore/],
    ["the interface is not up", { status: null }, /interface not up/],
    ["admin state down", { e: ep({ state: "inactive" }) }, /admin_state_up is false/],
  ])("not programmed when %s", (_what, v, detail) => {
    const a = portAnswer(view(v), PORT, "hv1");
    expect(a.programmed).toBe(false);
    expect(a.status).not.toBe("ACTIVE");
    expect(a.detail).toMatch(detail);
  });

  it("not programmed for another host (a port being migrated: the block is for the new binding)", () => {
    expect(portAnswer(view(), PORT, "hv2")).toMatchObject({ programmed: false, status: "DOWN", detail: expect.stringMatching(/no Palisade endpoint/) });
  });

  it("with the port's Neutron revision: only once the adapter has synced that revision (a port rebound while the adapter is behind waits)", () => {
    const synced = (n: number | undefined) => (id: string) => (id === PORT ? n : undefined);
    expect(portAnswer(view(), PORT, "hv1", 7, synced(undefined))).toMatchObject({ programmed: false, detail: expect.stringMatching(/has not synced revision 7/) });
    expect(portAnswer(view(), PORT, "hv1", 7, synced(6))).toMatchObject({ programmed: false, detail: expect.stringMatching(/\(has 6\)/) });
    expect(portAnswer(view(), PORT, "hv1", 7, synced(7)).programmed).toBe(true);
    expect(portAnswer(view(), PORT, "hv1", 7, synced(9)).programmed).toBe(true);
  });

  it("an unknown port: DOWN, not programmed", () => {
    expect(portAnswer(view(), "ffffffff-0000-4000-8000-000000000000", "hv1").programmed).toBe(false);
  });
});

describe("the ML2 endpoint over HTTP", () => {
  let server: Ml2Endpoint | undefined;
  afterEach(async () => { await server?.close(); server = undefined; });
  const logger = pino({ level: "silent" });

  async function start(read: () => Promise<Ml2View> = async () => view(), nudges: unknown[] = [], o: { ttlMs?: number; staleMs?: number } = {}) {
    server = await startMl2Endpoint({ listen: "127.0.0.1:0", read, nudge: (c) => nudges.push(c), synced: () => () => 3, logger, ttlMs: o.ttlMs ?? 1_000, staleMs: o.staleMs });
    return `http://127.0.0.1:${server.port}`;
  }
  const post = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });

  it("answers hosts and ports from one cached view: many questions, one read of Palisade", async () => {
    let reads = 0;
    const url = await start(async () => { reads++; return view(); });
    const [h, other, ports] = await Promise.all([
      fetch(`${url}/v1/hosts/hv1`).then((r) => r.json()),
      fetch(`${url}/v1/hosts/hv9`).then((r) => r.json()),
      post(`${url}/v1/ports/status`, { ports: [{ id: PORT, host: "hv1" }, { id: PORT, host: "hv2" }] }).then((r) => r.json()),
    ]);
    expect(h).toMatchObject({ host: "hv1", connected: true });
    expect(other).toMatchObject({ host: "hv9", connected: false });
    expect((ports as { ports: { programmed: boolean }[] }).ports.map((p) => p.programmed)).toEqual([true, false]);
    expect(reads).toBe(1);
  });

  it.each<[string, unknown, RegExp]>([
    ["no ports list", { port: [] }, /expected \{"ports"/],
    ["a port id with a slash", { ports: [{ id: "../x", host: "hv1" }] }, /ports\[0\]\.id/],
    ["a host with a space", { ports: [{ id: PORT, host: "hv 1" }] }, /ports\[0\]\.host/],
    ["too many ports", { ports: Array.from({ length: ML2_LIMITS.portsPerRequest + 1 }, () => ({ id: PORT, host: "hv1" })) }, /at most 1000/],
    ["not JSON", "{", /not JSON/],
    ["a negative revision", { ports: [{ id: PORT, host: "hv1", revision: -1 }] }, /ports\[0\]\.revision/],
    ["a revision that is a string", { ports: [{ id: PORT, host: "hv1", revision: "3" }] }, /ports\[0\]\.revision/],
  ])("refuses %s with 400 and the reason", async (_what, body, msg) => {
    const url = await start();
    const r = await post(`${url}/v1/ports/status`, body);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toMatch(msg);
  });

  it("a port's revision is checked against what the adapter synced", async () => {
    const url = await start();
    const r = await post(`${url}/v1/ports/status`, { ports: [{ id: PORT, host: "hv1", revision: 3 }, { id: PORT, host: "hv1", revision: 4 }] });
    expect(((await r.json()) as { ports: { programmed: boolean }[] }).ports.map((p) => p.programmed)).toEqual([true, false]);
  });

  it("a host name with a malformed escape is a 400, not a 503", async () => {
    const url = await start();
    expect((await fetch(`${url}/v1/hosts/%E0%A4%A`)).status).toBe(400);
  });

  it("while a refresh is slow, a view up to staleMs old answers at once; older, the request waits for the refresh", async () => {
    let n = 0;
    let release!: () => void;
    const url = await start(async () => {
      if (n++ === 0) return view();
      await new Promise<void>((r) => { release = r; });
      return view({ h: host({ connected: false }) });
    }, [], { ttlMs: 50, staleMs: 400 });
    expect(((await (await fetch(`${url}/v1/hosts/hv1`)).json()) as { connected: boolean }).connected).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    // Past the TTL: a refresh starts (and hangs); the cached view answers.
    expect(((await (await fetch(`${url}/v1/hosts/hv1`)).json()) as { connected: boolean }).connected).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    // Past staleMs: the answer waits for the refresh.
    const late = fetch(`${url}/v1/hosts/hv1`).then(async (r) => ((await r.json()) as { connected: boolean }).connected);
    await new Promise((r) => setTimeout(r, 50));
    release();
    expect(await late).toBe(false);
  });

  it("a view is answered with the synced revisions of the moment its read began (a sync finishing meanwhile does not make an older view's endpoint count)", async () => {
    let synced = 3;
    let release!: () => void;
    let reads = 0;
    server = await startMl2Endpoint({
      listen: "127.0.0.1:0", nudge: () => {}, logger, ttlMs: 50, staleMs: 50,
      synced: () => { const at = synced; return () => at; },
      read: async () => { if (reads++ === 0) await new Promise<void>((r) => { release = r; }); return view(); },
    });
    const url = `http://127.0.0.1:${server.port}`;
    const ask = async () => ((await (await post(`${url}/v1/ports/status`, { ports: [{ id: PORT, host: "hv1", revision: 4 }] })).json()) as { ports: { programmed: boolean }[] }).ports[0]!.programmed;
    const first = ask();
    await new Promise((r) => setTimeout(r, 50));
    synced = 4; // the watch synced revision 4 while the read was running
    release();
    expect(await first).toBe(false);
    await new Promise((r) => setTimeout(r, 80));
    expect(await ask()).toBe(true); // a read begun after the sync
  });

  it("refuses a body over the limit with 413", async () => {
    const url = await start();
    const r = await post(`${url}/v1/ports/status`, `{"ports":[],"pad":"${"x".repeat(ML2_LIMITS.bodyBytes)}"}`);
    expect(r.status).toBe(413);
  });

  it("a change notice nudges the watch with what changed (202); a bad one is a 400 naming the field and nudges nothing", async () => {
    const nudges: unknown[] = [];
    const url = await start(undefined, nudges);
    const GROUP = "1a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    expect((await post(`${url}/v1/changes`, { changes: [{ resource: "port", id: PORT }, { resource: "security_group_rule", id: PORT, group: GROUP }], overflow: false })).status).toBe(202);
    // The first format: one notice stood for many changes.
    expect((await post(`${url}/v1/changes`, { resource: "security_group_rule", id: PORT })).status).toBe(202);
    const bad = await post(`${url}/v1/changes`, { changes: [{ resource: "port", id: PORT }, { resource: "security_group_rule", id: PORT }] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/changes\[1\]\.group/);
    expect((await post(`${url}/v1/changes`, { resource: "nova_server", id: PORT })).status).toBe(400);
    expect(nudges).toEqual([
      { changes: [{ resource: "port", id: PORT }, { resource: "security_group_rule", id: PORT, group: GROUP }], overflow: false, unknown: false },
      { changes: [], overflow: false, unknown: true },
    ]);
  });

  it("counts each request under its route, a host's name and any unknown path folded (a metric's label: bounded)", async () => {
    const routes: string[] = [];
    server = await startMl2Endpoint({ listen: "127.0.0.1:0", read: async () => view(), nudge: () => {}, logger, onRequest: (r) => routes.push(r) });
    const url = `http://127.0.0.1:${server.port}`;
    await fetch(`${url}/v1/hosts/hv1`);
    await fetch(`${url}/v1/hosts/hv2`);
    await post(`${url}/v1/changes`, { resource: "port", id: PORT });
    await fetch(`${url}/v1/ports/transitions?after=0`);
    await fetch(`${url}/v1/no/such/${"x".repeat(20)}`);
    expect(routes).toEqual(["/v1/hosts", "/v1/hosts", "/v1/changes", "/v1/ports/transitions", "other"]);
  });

  it("Palisade unreadable: 503, no guess (the driver then binds nothing and keeps its blocks)", async () => {
    const url = await start(async () => { throw new Error("controller unavailable"); });
    const r = await fetch(`${url}/v1/hosts/hv1`);
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: string }).error).toMatch(/controller unavailable/);
  });
});
