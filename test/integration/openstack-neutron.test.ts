// palisade-openstack against a real Neutron (Debian's neutron-server, started
// for this file: test/lab/neutron-process.ts) and a real controller and
// etcd. Networks, groups, rules and ports are created through Neutron's REST
// API; the tests check what the adapter writes to Palisade. Nothing is mocked.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { endpointFromPb, profileFromPb } from "../../services/contract/model-wire.js";
import { NeutronAdmin, startNeutron, type NeutronProcess } from "../lab/neutron-process.js";
import { freePort } from "../lab/etcd-process.js";
import { BIN, eventually, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let neutron: NeutronProcess;
let limited: NeutronProcess; // pagination_max_limit = 2, filter_validation = false (changed_since accepted)
let api: NeutronAdmin;
let t: Awaited<ReturnType<typeof startTestController>>;
const dir = mkdtempSync(join(tmpdir(), "palisade-os-neutron-"));
let n = 0;
function file(data: unknown): string {
  const f = join(dir, `in-${n++}.json`);
  writeFileSync(f, JSON.stringify(data));
  return f;
}

async function adapter(args: string[], env: Record<string, string> = {}) {
  const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, ...args], {
    reject: false, env: { NO_COLOR: "1", OS_TOKEN: "noauth", ...env },
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
const once = (url = neutron.url, extra: string[] = []) => adapter(["watch", "--neutron-url", url, "--once", ...extra]);
const endpoints = async () => (await call(t.clients.policy, t.clients.policy.listEndpoints, { host: "" })).endpoints.map(endpointFromPb).filter((e) => e.orchestrator === "openstack");
const profiles = async () => (await call(t.clients.policy, t.clients.policy.listProfiles, {})).profiles.map(profileFromPb);
const revision = async () => (await call(t.clients.policy, t.clients.policy.getRevision, {})).revision;

let net: { id: string; subnets: string[] };
let web: Json;

beforeAll(async () => {
  requireBuild();
  [neutron, limited] = await Promise.all([startNeutron(), startNeutron({ paginationMaxLimit: 2, filterValidation: false })]);
  api = new NeutronAdmin(neutron.url);
  t = await startTestController();
  net = await api.network("net-a", "198.18.10.0/24", "2001:db8:10::/64");
  web = await api.group("web");
  await api.rule(web.id, { protocol: "tcp", port_range_min: 80, port_range_max: 80 });
}, 180_000);

afterAll(async () => {
  await t?.stop();
  await Promise.all([neutron?.stop(), limited?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("against a real Neutron", () => {
  it("bound compute ports become endpoints, groups become profiles; unbound and failed bindings get none", async () => {
    const a = await api.port({ network_id: net.id, device_id: "vm-a", "binding:host_id": "hv1", security_groups: [web.id] });
    const unbound = await api.port({ network_id: net.id, device_id: "vm-u", security_groups: [web.id] });
    const failed = await api.port({ network_id: net.id, device_id: "vm-f", "binding:host_id": "fail-hv9", security_groups: [web.id] });
    expect(failed["binding:vif_type"]).toBe("binding_failed");
    const r = await once();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const eps = await endpoints();
    expect(eps.map((e) => e.id)).toEqual([a.id]);
    expect(eps[0]).toMatchObject({ host: "hv1", workload: "vm-a", name: `tap${a.id.slice(0, 11)}`, mac: a.mac_address, profileIds: [web.id] });
    expect(eps[0]!.ipv4Nets).toEqual([`${a.fixed_ips.find((f: Json) => !f.ip_address.includes(":")).ip_address}/32`]);
    const p = (await profiles()).find((x) => x.id === web.id)!;
    expect(p.inboundRules.some((rule) => rule.match.protocol === "tcp" && rule.match.dstPorts?.[0]?.first === 80)).toBe(true);
    expect([unbound.id, failed.id].some((id) => eps.some((e) => e.id === id))).toBe(false);
  });
});

describe("partial listings", () => {
  it("sync refuses one page of a paginated listing; fetch saves every page", async () => {
    const lim = new NeutronAdmin(limited.url);
    const ln = await lim.network("net-l", "198.18.20.0/24");
    const g = await lim.group("g");
    for (let i = 0; i < 5; i++) await lim.port({ network_id: ln.id, device_id: `vm-l${i}`, "binding:host_id": "hv1", security_groups: [g.id] });
    // What a plain GET returns when the operator sets pagination_max_limit.
    const page = await lim.listAll("ports");
    expect(page.ports.length).toBe(2);
    expect(page.ports_links.some((l: Json) => l.rel === "next")).toBe(true);
    const groups = await lim.listAll("security-groups");
    const before = await revision();
    const r = await adapter(["sync", "--security-groups", file(groups), "--ports", file(page)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/(ports|security_groups)_links: has a "next" link: this is one page of a paginated listing/);
    expect(await revision()).toBe(before);

    const [pf, gf] = [join(dir, "all-ports.json"), join(dir, "all-groups.json")];
    const f = await adapter(["fetch", "--neutron-url", limited.url, "--ports", pf, "--security-groups", gf]);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toMatch(/^saved 5 port\(s\), \d+ security group\(s\)$/m);
    // (A dry run: this Neutron is not the one the adapter manages.)
    const s = await adapter(["sync", "--security-groups", gf, "--ports", pf, "--dry-run", "--allow-mass-delete"]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout.match(/create endpoint hv1\/openstack\/vm-l\d\//g)?.length).toBe(5);
  });
});

describe("the mass-deletion guard holds back only the deletions", () => {
  it("a revoked rule is enforced while most ports' deletions are held back; status shows them; --allow-mass-delete applies them", async () => {
    const db = await api.group("db");
    const rule = await api.rule(db.id, { protocol: "tcp", port_range_min: 5432, port_range_max: 5432 });
    const ports: Json[] = [];
    for (let i = 0; i < 12; i++) ports.push(await api.port({ network_id: net.id, device_id: `vm-db${i}`, "binding:host_id": "hv2", security_groups: [db.id] }));
    expect((await once()).code).toBe(0);
    const owned = (await endpoints()).length;
    const dbRule = () => profiles().then((ps) => ps.find((p) => p.id === db.id)!.inboundRules.some((x) => x.match.dstPorts?.[0]?.first === 5432));
    expect(await dbRule()).toBe(true);

    // Most VMs go (a Neutron hiccup would look the same), and the allow rule is revoked.
    const gone = ports.slice(0, 10);
    for (const p of gone) await api.request("DELETE", `/ports/${p.id}`);
    await api.request("DELETE", `/security-group-rules/${rule.id}`);
    const r = await once();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`10 of the ${owned} endpoint\\(s\\) the adapter manages are gone from Neutron: a mass deletion .* held back and everything else is applied`));
    expect(await dbRule()).toBe(false); // the revocation is in force
    const eps = await endpoints();
    expect(gone.every((p) => eps.some((e) => e.id === p.id && e.labels["palisade.io/deletion-held"] === "true"))).toBe(true);
    expect((await profiles()).some((p) => p.id === db.id)).toBe(true); // still used by held endpoints
    const st = await adapter(["status", "-o", "json"]);
    const rows = JSON.parse(st.stdout).ports as { port_id: string; detail: string }[];
    expect(rows.find((x) => x.port_id === gone[0]!.id)!.detail).toMatch(/deletion held back by the mass-deletion guard/);

    const allowed = await once(neutron.url, ["--allow-mass-delete"]);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect((await endpoints()).some((e) => gone.some((p) => p.id === e.id))).toBe(false);
  });
});

describe("address ownership", () => {
  it("two tenants on the same subnet both keep their addresses, each on its network; within a network fixed IPs win over pairs", async () => {
    const other = new NeutronAdmin(neutron.url, "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0");
    const netA = await api.network("same-a", "198.18.40.0/24");
    const netB = await other.network("same-b", "198.18.40.0/24");
    const gB = await other.group("b");
    const a = await api.port({ network_id: netA.id, device_id: "vm-same-a", "binding:host_id": "hv1", security_groups: [web.id], fixed_ips: [{ ip_address: "198.18.40.10" }] });
    const b = await other.port({ network_id: netB.id, device_id: "vm-same-b", "binding:host_id": "hv1", security_groups: [gB.id], fixed_ips: [{ ip_address: "198.18.40.10" }] });
    // On a's network: a pair naming a's address, and a pod range covering it.
    const thief = await api.port({
      network_id: netA.id, device_id: "vm-same-t", "binding:host_id": "hv2", security_groups: [web.id], fixed_ips: [{ ip_address: "198.18.40.100" }],
      allowed_address_pairs: [{ ip_address: "198.18.40.10" }, { ip_address: "198.18.40.0/28" }, { ip_address: "198.18.41.0/24", mac_address: "00:00:5e:00:01:07" }],
    });
    // On b's network a pod range covering b's address is cut around it too (a's .10 has no bearing there).
    const peer = await other.port({ network_id: netB.id, device_id: "vm-same-p", "binding:host_id": "hv2", security_groups: [gB.id], allowed_address_pairs: [{ ip_address: "198.18.40.0/28" }] });
    const r = await once();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const eps = new Map((await endpoints()).map((e) => [e.id, e]));
    expect(eps.get(a.id)).toMatchObject({ network: netA.id, ipv4Nets: ["198.18.40.10/32"] });
    expect(eps.get(b.id)).toMatchObject({ network: netB.id, ipv4Nets: ["198.18.40.10/32"] });
    expect(eps.get(thief.id)).toMatchObject({
      network: netA.id, ipv4Nets: ["198.18.40.100/32"],
      addressPairs: [{ net: "198.18.40.0/29" }, { net: "198.18.40.8/31" }, { net: "198.18.40.11/32" }, { net: "198.18.40.12/30" }, { net: "198.18.41.0/24", mac: "00:00:5e:00:01:07" }],
    });
    const peerFixed = eps.get(peer.id)!.ipv4Nets[0]!;
    // Neutron picked the peer's own address: if inside the /28 it is its own and stays in; b's .10 is cut out.
    const pairs = eps.get(peer.id)!.addressPairs!.map((x) => x.net);
    expect(pairs).not.toContain("198.18.40.0/28");
    expect(pairs).toContain("198.18.40.11/32");
    expect(peerFixed.startsWith("198.18.40.")).toBe(true);
    expect(r.stdout + r.stderr).toMatch(/fixed IPs win/);
  });
});

// watch as it runs in production, against the real Neutron: one Neutron with
// its default configuration (changed_since refused: the revisions feed), one
// with filter_validation = false (the changed_since feed; it also paginates
// every listing by 2). Each watch writes to its own controller.
describe.each([
  { feed: "revisions", which: () => neutron },
  { feed: "changed-since", which: () => limited },
])("watch follows Neutron's changes ($feed feed)", ({ feed, which }) => {
  it("rule, port and deletion changes are written within seconds; a live migration's inactive binding gets an endpoint; idle polls write nothing", async () => {
    const n = which();
    const a = new NeutronAdmin(n.url, `c0ffee00c0ffee00c0ffee00c0ffee0${feed === "revisions" ? "1" : "2"}`);
    const ctl = await startTestController();
    const metricsPort = await freePort();
    let watch: ResultPromise | undefined;
    let log = "";
    try {
      const wn = await a.network(`net-w-${feed}`, "198.18.40.0/24");
      const g = await a.group(`w-${feed}`);
      const vm = await a.port({ network_id: wn.id, device_id: "vm-w1", "binding:host_id": "hv1", security_groups: [g.id] });
      const gone = await a.port({ network_id: wn.id, device_id: "vm-w2", "binding:host_id": "hv1", security_groups: [g.id] });
      watch = execa(process.execPath, [
        BIN.openstack, "--insecure", "--controller", ctl.address, "watch", "--neutron-url", n.url, "--interval", "1",
        "--deletion-check-interval", "2", "--metrics-listen", `127.0.0.1:${metricsPort}`, "--log-level", "debug",
      ], { reject: false, env: { NO_COLOR: "1", OS_TOKEN: "noauth" }, all: true, buffer: false });
      watch.all!.on("data", (d: Buffer) => { log += d.toString(); });
      const eps = async () => (await call(ctl.clients.policy, ctl.clients.policy.listEndpoints, { host: "" })).endpoints.map(endpointFromPb).filter((e) => e.orchestrator === "openstack");
      const rulesOf = async (id: string) => (await call(ctl.clients.policy, ctl.clients.policy.listProfiles, {})).profiles.map(profileFromPb).find((p) => p.id === id)?.inboundRules ?? [];
      const within = async (what: string, fn: () => Promise<boolean>) => {
        const t0 = Date.now();
        try {
          await eventually(fn, { what: `${what} (${feed})`, timeoutMs: 15_000, intervalMs: 50 });
        } catch (e) {
          throw new Error(`${(e as Error).message}; the watch's log ends:\n${log.slice(-4000)}`);
        }
        return Date.now() - t0;
      };
      await within("first sync", async () => (await eps()).some((e) => e.id === vm.id));
      expect(log).toMatch(feed === "revisions" ? /change feed: revisions listing/ : /change feed: changed_since/);

      // A rule added, then a port changed, then a port deleted.
      const rule = await a.rule(g.id, { protocol: "tcp", port_range_min: 8443, port_range_max: 8443 });
      const tRule = await within("rule added", async () => (await rulesOf(g.id)).some((r) => r.match.dstPorts?.[0]?.first === 8443));
      await a.request("DELETE", `/security-group-rules/${rule.id}`);
      const tRevoke = await within("rule deleted", async () => !(await rulesOf(g.id)).some((r) => r.match.dstPorts?.[0]?.first === 8443));
      await a.updatePort(vm.id, { admin_state_up: false });
      const tPort = await within("port admin down", async () => (await eps()).find((e) => e.id === vm.id)?.state === "inactive");
      await a.request("DELETE", `/ports/${gone.id}`);
      const tDelete = await within("port deleted", async () => !(await eps()).some((e) => e.id === gone.id));
      console.log(`${feed}: rule added ${tRule} ms, rule deleted ${tRevoke} ms, port changed ${tPort} ms, port deleted ${tDelete} ms (from the Neutron call returning)`);

      // Live migration through the real bindings API, as Nova drives it.
      const hostsOf = async () => (await eps()).filter((e) => e.id === vm.id).map((e) => e.host).sort();
      await a.request("POST", `/ports/${vm.id}/bindings`, { binding: { host: "hv2", project_id: a.projectId, tenant_id: a.projectId } });
      await within("endpoint on the destination while its binding is inactive", async () => (await hostsOf()).join() === "hv1,hv2");
      await a.request("PUT", `/ports/${vm.id}/bindings/hv2/activate`);
      expect((await a.request("GET", `/ports/${vm.id}`)).port["binding:host_id"]).toBe("hv2");
      // Let a few polls pass: the source stays while its (now unbound) binding exists.
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await hostsOf()).toEqual(["hv1", "hv2"]);
      await a.request("DELETE", `/ports/${vm.id}/bindings/hv1`);
      await within("source endpoint gone with its binding", async () => (await hostsOf()).join() === "hv2");

      // Idle polls happen and write nothing.
      const rev = (await call(ctl.clients.policy, ctl.clients.policy.getRevision, {})).revision;
      await new Promise((r) => setTimeout(r, 2_500));
      expect((await call(ctl.clients.policy, ctl.clients.policy.getRevision, {})).revision).toBe(rev);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(Number(/^palisade_openstack_polls_total\{kind="idle"\} (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
    } finally {
      watch?.kill("SIGTERM");
      await watch;
      await ctl.stop();
    }
  }, 120_000);
});
