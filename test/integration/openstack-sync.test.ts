// palisade-openstack sync against a real controller and etcd: create,
// change, delete, idempotence, ownership, refusals — through the binary, with
// Neutron-shaped fixtures (test/fixtures/openstack).
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb, endpointFromPb, profileFromPb } from "../../services/contract/model-wire.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import { parseDocuments } from "../../services/model/index.js";
import { syncOnce } from "../../services/openstack/sync.js";
import { parsePortsFile, parseSecurityGroupsFile, translate } from "../../services/openstack/translate.js";
import { BIN, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const FIX = join(packageRoot(), "test/fixtures/openstack");
const DEFAULT_SG = "a3c4e6f8-1b2d-4e5f-8a9b-0c1d2e3f4a5b";
const WEB_SG = "5e7d9c1b-3a2f-4d6e-9b8a-7c6d5e4f3a2b";
const PORT_HV1 = "4f2a9c1e-7b3d-4e8a-9f6c-2d1b0a9e8c7d";
const PORT_HV2 = "8b1e6d4c-2a7f-4c3b-9e8d-5f4a3b2c1d0e";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const dir = mkdtempSync(join(tmpdir(), "palisade-os-"));
const load = (f: string): Json => JSON.parse(readFileSync(join(FIX, f), "utf8"));
let n = 0;
function file(data: unknown): string {
  const f = join(dir, `in-${n++}.json`);
  writeFileSync(f, JSON.stringify(data));
  return f;
}

let t: Awaited<ReturnType<typeof startTestController>>;

async function adapter(args: string[]) {
  const r = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, ...args], { reject: false, env: { NO_COLOR: "1" } });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
const sync = (groups: unknown, ports: unknown, extra: string[] = []) => adapter(["sync", "--security-groups", file(groups), "--ports", file(ports), ...extra]);
const revision = async () => (await call(t.clients.policy, t.clients.policy.getRevision, {})).revision;
const profiles = async () => (await call(t.clients.policy, t.clients.policy.listProfiles, {})).profiles.map(profileFromPb);
const endpoints = async () => (await call(t.clients.policy, t.clients.policy.listEndpoints, { host: "" })).endpoints.map(endpointFromPb);

beforeAll(async () => {
  requireBuild();
  t = await startTestController();
  // Objects someone else manages: the adapter must never touch them.
  await call(t.clients.policy, t.clients.policy.apply, {
    deletes: [],
    documents: parseDocuments([
      { kind: "Profile", id: "manual", tags: ["manual"], inbound_rules: [], outbound_rules: [{ action: "allow" }] },
      { kind: "Endpoint", host: "hv1", orchestrator: "k8s", workload: "pod", id: "eth0", name: "tapk8s0", state: "active", ipv4_nets: ["198.18.9.9/32"], profile_ids: ["manual"] },
    ]).map(documentToPb),
  });
});

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("palisade-openstack sync", () => {
  it("creates profiles for the groups and endpoints for the bound compute ports", async () => {
    const r = await sync(load("security-groups.json"), load("ports.json"));
    expect(r.code, r.stderr).toBe(0);
    // 2 groups + the no-port-security profile; 4 bound compute ports.
    expect(r.stdout).toMatch(/^synced: 7 created, 0 updated, 0 deleted, 0 unchanged, 3 port\(s\) skipped in 1 transaction\(s\), at revision \d+$/m);
    expect(r.stderr).toMatch(/warning: .*port security is disabled/);

    const ps = await profiles();
    const web = ps.find((p) => p.id === WEB_SG)!;
    expect(web.tags).toEqual([WEB_SG]);
    expect(web.labels).toEqual({ "palisade.io/owner": "openstack" });
    expect(web.inboundRules.some((rule) => rule.match.protocol === "tcp" && rule.match.dstPorts?.[0]?.first === 80)).toBe(true);
    const def = ps.find((p) => p.id === DEFAULT_SG)!;
    expect(def.inboundRules.filter((rule) => rule.match.srcTag === DEFAULT_SG).map((rule) => rule.ipVersion).sort()).toEqual([4, 6]);
    expect(def.outboundRules.map((rule) => rule.ipVersion).sort()).toEqual([4, 6]);

    const eps = await endpoints();
    const p1 = eps.find((e) => e.id === PORT_HV1)!;
    expect(p1).toMatchObject({
      host: "hv1", orchestrator: "openstack", name: `tap${PORT_HV1.slice(0, 11)}`, state: "active", mac: "fa:16:3e:4a:91:c2",
      ipv4Nets: ["198.18.0.11/32"], ipv6Nets: ["2001:db8:0:1::11/128"], profileIds: [WEB_SG, DEFAULT_SG] /* sorted */,
    });
    expect(eps.filter((e) => e.orchestrator === "openstack").length).toBe(4);
    // Untouched: someone else's objects.
    expect(ps.some((p) => p.id === "manual")).toBe(true);
    expect(eps.some((e) => e.orchestrator === "k8s")).toBe(true);
  });

  it("a second sync with the same input writes nothing", async () => {
    const before = await revision();
    const r = await sync(load("security-groups.json"), load("ports.json"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^in sync: nothing to write \(0 created, 0 updated, 0 deleted, 7 unchanged/m);
    expect(await revision()).toBe(before);
  });

  it("changes in Neutron become updates and deletions, in one transaction; others' objects survive", async () => {
    const groups = load("security-groups.json");
    const ports = load("ports.json");
    // web now also admits 8080; the hv2 port is gone; the hv1 port is admin-down.
    const web = groups.security_groups.find((g: Json) => g.id === WEB_SG);
    web.security_group_rules.push({ ...web.security_group_rules.find((x: Json) => x.port_range_min === 80), id: "ffffffff-0000-4000-8000-000000008080", port_range_min: 8080, port_range_max: 8080 });
    ports.ports = ports.ports.filter((p: Json) => p.id !== PORT_HV2);
    ports.ports.find((p: Json) => p.id === PORT_HV1).admin_state_up = false;
    const dry = await sync(groups, ports, ["--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    const before = await revision();
    expect(dry.stdout).toMatch(/update profile 5e7d9c1b/);
    expect(dry.stdout).toMatch(/delete endpoint hv2\/openstack\/.*\/8b1e6d4c/);
    expect(dry.stdout).toMatch(/^dry run: would write 0 created, 2 updated, 1 deleted/m);
    expect(await revision()).toBe(before);

    const r = await sync(groups, ports);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^synced: 0 created, 2 updated, 1 deleted, 4 unchanged, .* in 1 transaction\(s\)/m);
    const eps = await endpoints();
    expect(eps.some((e) => e.id === PORT_HV2)).toBe(false);
    expect(eps.find((e) => e.id === PORT_HV1)!.state).toBe("inactive");
    expect((await profiles()).find((p) => p.id === WEB_SG)!.inboundRules.some((rule) => rule.match.dstPorts?.[0]?.first === 8080)).toBe(true);
    expect(eps.some((e) => e.orchestrator === "k8s")).toBe(true);

    // Neutron empties out: 3 endpoints is a small cloud, not a mass deletion
    // (at least 10: test/unit/openstack-sync-guards.test.ts); everything the
    // adapter owns goes, nothing else.
    const gone = await sync({ security_groups: [] }, { ports: [] });
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stdout).toMatch(/0 created, 0 updated, 6 deleted/);
    expect((await profiles()).map((p) => p.id)).toEqual(["manual"]);
    expect((await endpoints()).map((e) => e.orchestrator)).toEqual(["k8s"]);
  });

  it("refuses to overwrite an object it does not own, and writes nothing of that sync", async () => {
    await call(t.clients.policy, t.clients.policy.apply, {
      deletes: [], documents: parseDocuments([{ kind: "Profile", id: WEB_SG, tags: ["hand-made"] }]).map(documentToPb),
    });
    const before = await revision();
    const r = await sync(load("security-groups.json"), load("ports.json"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^palisade-openstack: refusing to sync: 1 object\(s\) not owned by the adapter are in the way$/m);
    expect(r.stderr).toContain(`profile ${WEB_SG} exists and is not owned by the OpenStack adapter`);
    expect(await revision()).toBe(before);
    expect((await profiles()).find((p) => p.id === WEB_SG)!.tags).toEqual(["hand-made"]);
    await call(t.clients.policy, t.clients.policy.delete, { objects: [{ kind: { $case: "profileId", value: WEB_SG } }], ignoreMissing: false });
  });

  it("an untranslatable input, a malformed file or ports listed without admin rights change nothing", async () => {
    const before = await revision();
    const groups = load("security-groups.json");
    groups.security_groups[1].security_group_rules.push({ id: "bad-1", direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 90, port_range_max: 80 });
    const bad = await sync(groups, load("ports.json"), ["--strict"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^palisade-openstack: cannot translate \(1 problem\(s\), nothing written\): security group .* rule bad-1: port_range_min: /m);

    const malformed = await adapter(["sync", "--security-groups", file({ groups: [] }), "--ports", file(load("ports.json"))]);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/security_groups/);

    const ports = load("ports.json");
    for (const p of ports.ports) delete p["binding:host_id"];
    const nonAdmin = await sync(load("security-groups.json"), ports);
    expect(nonAdmin.code).toBe(1);
    expect(nonAdmin.stderr).toMatch(/listed without admin rights; refusing to sync/);

    const usage = await adapter(["sync", "--ports", file(load("ports.json"))]);
    expect(usage.code).toBe(2);
    expect(await revision()).toBe(before);
  });

  it("by default an untranslatable rule is left out (fail closed) and everything else is synced", async () => {
    const groups = load("security-groups.json");
    const web = groups.security_groups.find((g: Json) => g.id === WEB_SG);
    web.security_group_rules.push({ id: "bad-2", direction: "ingress", ethertype: "IPv6", protocol: "ah" });
    const r = await sync(groups, load("ports.json"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^left out: security group ${WEB_SG} rule bad-2: protocol: `, "m"));
    expect(r.stdout).toMatch(/; 1 untranslatable rule\(s\)\/group\(s\)\/port\(s\) left out \(see stderr\)$/m);
    const profile = (await profiles()).find((p) => p.id === WEB_SG)!;
    expect(profile.inboundRules.some((rule) => rule.match.dstPorts?.[0]?.first === 80)).toBe(true);
    expect(profile.inboundRules.some((rule) => rule.match.protocol === "51")).toBe(false);
    expect((await endpoints()).filter((e) => e.orchestrator === "openstack").length).toBe(4);
  });

  // The order of the steps is pinned by test/unit/openstack-reconcile.test.ts (stepsInOrder).
  it("a plan larger than one batch is written in several transactions, with the same result", async () => {
    await syncOnce(t.clients.policy, translate({ securityGroups: [], ports: [] }), { allowMassDelete: true });
    const result = translate({ securityGroups: parseSecurityGroupsFile(load("security-groups.json")), ports: parsePortsFile(load("ports.json")) });
    const r = await syncOnce(t.clients.policy, result, { maxBatch: 2 });
    expect(r.created).toBe(7);
    expect(r.transactions).toBe(4);
    const again = await syncOnce(t.clients.policy, result);
    expect(again.transactions).toBe(0);
    expect(again.unchanged).toBe(7);
  });
});

describe("palisade-openstack watch", () => {
  it("polls Neutron with its token, follows changes, keeps the last state when Neutron fails, and stops on SIGTERM", async () => {
    // Start from nothing owned, so every object below is the watcher's doing.
    await syncOnce(t.clients.policy, translate({ securityGroups: [], ports: [] }), { allowMassDelete: true });
    expect((await endpoints()).filter((e) => e.orchestrator === "openstack")).toEqual([]);
    const { createServer } = await import("node:http");
    const groups = load("security-groups.json");
    let ports = load("ports.json");
    let failing = false;
    const tokens = new Set<string>();
    const server = createServer((req, res) => {
      tokens.add(String(req.headers["x-auth-token"]));
      const path = (req.url ?? "").split("?")[0];
      const body = failing ? undefined
        : path === "/v2.0/security-groups" ? groups : path === "/v2.0/ports" ? ports : undefined;
      res.writeHead(body ? 200 : failing ? 503 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(body ?? { NeutronError: { message: "unavailable" } }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const watcher = execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, "watch", "--neutron-url", url, "--interval", "1"], {
      reject: false, env: { OS_TOKEN: "gAAAA-test-token", PALISADE_LOG_LEVEL: "info" },
    });
    const { eventually } = await import("../support/binaries.js");
    try {
      await eventually(async () => (await endpoints()).filter((e) => e.orchestrator === "openstack").length === 4, { what: "watch created the endpoints", timeoutMs: 20_000 });
      expect([...tokens]).toEqual(["gAAAA-test-token"]);

      // Neutron down: nothing is deleted.
      failing = true;
      const before = await revision();
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await revision()).toBe(before);
      expect((await endpoints()).filter((e) => e.orchestrator === "openstack").length).toBe(4);

      // Back, with the hv2 port gone.
      ports = { ports: ports.ports.filter((p: Json) => p.id !== PORT_HV2) };
      failing = false;
      await eventually(async () => !(await endpoints()).some((e) => e.id === PORT_HV2), { what: "watch deleted the port's endpoint", timeoutMs: 20_000 });
    } finally {
      watcher.kill("SIGTERM");
      const r = await watcher;
      server.close();
      expect(r.exitCode).toBe(0);
      expect(String(r.stdout) + String(r.stderr)).toMatch(/sync failed; keeping the current state and retrying/);
      expect(String(r.stdout) + String(r.stderr)).not.toContain("gAAAA-test-token");
    }
  }, 60_000);

  it("stopping during a Neutron request says stopping, not retrying", async () => {
    const { createServer } = await import("node:http");
    let asked = false;
    const server = createServer(() => { asked = true; /* never answers */ });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const watcher = execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, "watch", "--neutron-url", url], {
      reject: false, env: { OS_TOKEN: "t", PALISADE_LOG_LEVEL: "info" },
    });
    const { eventually } = await import("../support/binaries.js");
    await eventually(async () => asked, { what: "the watcher asked Neutron" });
    watcher.kill("SIGTERM");
    const r = await watcher;
    server.closeAllConnections();
    server.close();
    const out = String(r.stdout) + String(r.stderr);
    expect(r.exitCode).toBe(0);
    expect(out).toMatch(/stopping: the sync in progress was abandoned/);
    expect(out).not.toMatch(/retrying/);
  });

  it("refuses to start without credentials or with a bad URL (usage errors)", async () => {
    const env = { OS_TOKEN: "", OS_AUTH_URL: "", OS_USERNAME: "", OS_PASSWORD: "", OS_PROJECT_NAME: "" };
    const noCreds = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, "watch", "--neutron-url", "http://127.0.0.1:1"], { reject: false, env });
    expect(noCreds.exitCode).toBe(2);
    expect(String(noCreds.stderr)).toMatch(/OS_AUTH_URL/);
    const badUrl = await execa(process.execPath, [BIN.openstack, "--insecure", "--controller", t.address, "watch", "--neutron-url", "ftp://x", "--os-token", "t"], { reject: false });
    expect(badUrl.exitCode).toBe(2);
    const watchArgs = [BIN.openstack, "--insecure", "--controller", t.address, "watch", "--neutron-url", "http://127.0.0.1:1", "--os-token", "t"];
    for (const [bad, message] of [
      [["--interval", "0.1"], /--interval must be 0.2-86400 seconds/],
      [["--interval", "5", "--resync-interval", "2"], /--resync-interval must be --interval-86400 seconds/],
      [["--deletion-check-interval", "600"], /--deletion-check-interval must be between --interval and --resync-interval/],
      [["--change-feed", "notifications"], /--change-feed.*notifications.*(choices|Allowed)/i],
    ] as const) {
      const r = await execa(process.execPath, [...watchArgs, ...bad], { reject: false });
      expect(r.exitCode, `${bad.join(" ")}: ${String(r.stderr)}`).toBe(2);
      expect(String(r.stderr)).toMatch(message);
    }
    // An operator's old --interval 30 still starts: the other periods follow it (checked by --once failing on Neutron, not on usage).
    const old = await execa(process.execPath, [...watchArgs, "--interval", "30", "--once"], { reject: false });
    expect(old.exitCode).toBe(1);
  });
});
