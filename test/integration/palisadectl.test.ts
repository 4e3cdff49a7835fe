// palisadectl as users run it: the built binary against a real controller.
import { EXAMPLE_ENDPOINT_YAML } from "../support/documents.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RpcError } from "../../services/contract/errors.js";
import { eventually, palisadectl, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;
const dir = mkdtempSync(join(tmpdir(), "palisadectl-test-"));
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
const ctl = (args: string[], input?: string) => palisadectl(t.address, args, input);

const YAML_STREAM = `kind: Profile
id: db
tags: [db]
inbound_rules:
  - {action: allow, protocol: tcp, src_tag: db-user, dst_ports: [5432, "6000:6010"], "!src_net": 198.18.9.0/24}
outbound_rules:
  - {action: allow}
---
${EXAMPLE_ENDPOINT_YAML}`;

describe("palisadectl", () => {
  beforeAll(async () => { requireBuild(); t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it("applies a YAML multi-document stream and reports the revision", async () => {
    const r = await ctl(["apply", "-f", file("stream.yaml", YAML_STREAM)]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/applied 2 document\(s\), 2 changed, at revision \d+/);
  });

  it("applies JSON lists from stdin", async () => {
    const r = await ctl(["apply", "-f", "-"], JSON.stringify([{ kind: "Profile", id: "app", tags: ["db-user"], inbound_rules: [], outbound_rules: [{ action: "allow" }] }]));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("1 changed");
  });

  it("round-trips get -o yaml and -o json: re-applying changes nothing", async () => {
    const y = await ctl(["get", "profiles", "-o", "yaml"]);
    expect(y.code).toBe(0);
    expect(y.stdout).toContain('"!src_net": 198.18.9.0/24');
    expect(y.stdout).toContain("6000:6010");
    const again = await ctl(["apply", "-f", "-"], y.stdout);
    expect(again.stdout).toContain("0 changed");
    const j = await ctl(["get", "endpoints", "-o", "json"]);
    const eps = JSON.parse(j.stdout);
    expect(eps).toHaveLength(1);
    expect(eps[0]).toMatchObject({ kind: "Endpoint", host: "hv1", name: "tap0a1b2c3d", ipv4_nets: ["198.18.1.2/32"], profile_ids: ["db"] });
    expect((await ctl(["apply", "-f", "-"], j.stdout)).stdout).toContain("0 changed");
    const table = await ctl(["get", "endpoints"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^HOST\s+ORCHESTRATOR\s+WORKLOAD\s+ID\s+INTERFACE/);
  });

  it("refuses invalid input with exit 1, one line naming document, field and reason, writing nothing", async () => {
    const before = await ctl(["get", "profiles", "-o", "json"]);
    const bad = `${YAML_STREAM.replace("id: db\n", "id: db2\n")}---\nkind: Profile\nid: broken\ninbound_rules:\n  - {protocol: tcp, dst_ports: ["90:80"]}\n`;
    const r = await ctl(["apply", "-f", file("bad.yaml", bad)]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("Profile broken: inbound_rules[0].dst_ports[0]");
    expect(r.stderr).toContain("N < M");
    expect((await ctl(["get", "profiles", "-o", "json"])).stdout).toBe(before.stdout);
  });

  it("trace explains the verdict from the model (allow and deny, table and json)", async () => {
    await ctl(["apply", "-f", "-"], JSON.stringify([
      { kind: "Profile", id: "app", tags: ["db-user"], inbound_rules: [], outbound_rules: [{ action: "allow" }] },
      { kind: "Endpoint", host: "hv2", orchestrator: "openstack", workload: "vm-2", id: "port-2", name: "tapapp", state: "active", ipv4_nets: ["198.18.2.3"], profile_ids: ["app"] },
    ]));
    // The controller evaluates its watched model: give the watch a moment.
    const allow = await eventually(async () => {
      const r = await ctl(["trace", "--from", "198.18.2.3", "--to", "198.18.1.2", "--protocol", "tcp", "--dst-port", "5432", "-o", "json"]);
      return r.code === 0 && JSON.parse(r.stdout).verdict === "allow" ? JSON.parse(r.stdout) : undefined;
    }, { what: "trace allow" });
    expect(allow.steps).toEqual([
      { direction: "outbound", endpoint: "hv2/openstack/vm-2/port-2", verdict: "allow", decision: "rule", profile: "app", rule_index: 0 },
      { direction: "inbound", endpoint: "hv1/openstack/vm-1/port-1", verdict: "allow", decision: "rule", profile: "db", rule_index: 0 },
    ]);
    const deny = await ctl(["trace", "--from", "198.18.2.3", "--to", "198.18.1.2", "--protocol", "tcp", "--dst-port", "22"]);
    expect(deny.code).toBe(0);
    expect(deny.stdout).toMatch(/^DENY/);
    expect(deny.stdout).toContain("no rule matched (default deny)");
    const bad = await ctl(["trace", "--from", "198.18.2.3", "--to", "2001:db8::1", "--protocol", "tcp"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("one IP family");
  });

  it("trace --from-network/--to-network picks among endpoints sharing an address; without them, INVALID_ARGUMENT naming the networks", async () => {
    const tenant = (wl: string, network: string, ip: string, profile: string) =>
      ({ kind: "Endpoint", host: "hv3", orchestrator: "openstack", workload: wl, id: `p-${wl}`, name: `tap${wl}`, state: "active", ipv4_nets: [ip], profile_ids: [profile], network });
    await ctl(["apply", "-f", "-"], JSON.stringify([
      { kind: "Profile", id: "t-web", tags: [], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] },
      { kind: "Profile", id: "t-ssh", tags: [], inbound_rules: [{ protocol: "tcp", dst_ports: [22] }], outbound_rules: [{}] },
      tenant("a1", "net-a", "198.18.30.10", "t-web"), tenant("a2", "net-a", "198.18.30.20", "t-web"),
      tenant("b1", "net-b", "198.18.30.10", "t-ssh"), tenant("b2", "net-b", "198.18.30.20", "t-ssh"),
    ]));
    const trace = (net: string, port: number, more: string[] = []) =>
      ctl(["trace", "--from", "198.18.30.10", "--to", "198.18.30.20", "--from-network", net, "--to-network", net, "--protocol", "tcp", "--dst-port", String(port), ...more]);
    const b = await eventually(async () => {
      const r = await trace("net-b", 22, ["-o", "json"]);
      return r.code === 0 && JSON.parse(r.stdout).verdict === "allow" ? JSON.parse(r.stdout) : undefined;
    }, { what: "trace on net-b" });
    expect(b.steps).toEqual([
      { direction: "outbound", endpoint: "hv3/openstack/b1/p-b1", network: "net-b", verdict: "allow", decision: "rule", profile: "t-ssh", rule_index: 0 },
      { direction: "inbound", endpoint: "hv3/openstack/b2/p-b2", network: "net-b", verdict: "allow", decision: "rule", profile: "t-ssh", rule_index: 0 },
    ]);
    const a = await trace("net-a", 22);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^DENY/);
    expect(a.stdout).toContain("inbound  hv3/openstack/a2/p-a2 (network net-a): deny — no rule matched (default deny)");
    expect((await trace("net-a", 80)).stdout).toMatch(/^ALLOW/);
    // The default network ("") holds neither address: not policed.
    expect((await trace("", 22)).stdout).toMatch(/^ALLOW \(neither address is an endpoint/);
    const ambiguous = await ctl(["trace", "--from", "198.18.30.10", "--to", "198.18.30.20", "--to-network", "net-a", "--protocol", "tcp"]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toContain(`invalid input: trace: from_network: 198.18.30.10 is held by endpoints on several networks ('net-a', 'net-b'); say which with --from-network N`);
    const e = await t.policy(t.clients.policy.trace, { src: "198.18.30.10", dst: "198.18.30.20", protocol: "tcp", fromNetwork: "net-a" }).then(() => undefined, (err: unknown) => err);
    expect((e as RpcError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((e as RpcError).issues).toEqual([expect.objectContaining({ field: "to_network" })]);
    const badName = await ctl(["trace", "--from", "198.18.30.10", "--to", "198.18.30.20", "--from-network", "no such/net", "--protocol", "tcp"]);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toContain("from_network");
    expect((await ctl(["delete", "-f", "-"], JSON.stringify([
      { kind: "Profile", id: "t-web" }, { kind: "Profile", id: "t-ssh" },
      ...["a1", "a2", "b1", "b2"].map((wl) => ({ kind: "Endpoint", host: "hv3", orchestrator: "openstack", workload: wl, id: `p-${wl}` })),
    ]))).code).toBe(0);
  });

  it("deletes by file, by profile id and by endpoint key; missing objects fail", async () => {
    expect((await ctl(["delete", "endpoint", "hv1/openstack/vm-1/port-1"])).code).toBe(0);
    const missing = await ctl(["delete", "endpoint", "hv1/openstack/vm-1/port-1"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("not found");
    expect((await ctl(["delete", "profile", "app"])).code).toBe(0);
    const r = await ctl(["delete", "-f", file("del.yaml", YAML_STREAM), "--ignore-missing"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("deleted 1 object(s)");
    expect(JSON.parse((await ctl(["get", "profiles", "-o", "json"])).stdout)).toEqual([]);
  });

  it("delete -f needs only identities: a document that no longer validates can still be deleted", async () => {
    expect((await ctl(["apply", "-f", "-"], JSON.stringify([{ kind: "Profile", id: "old", tags: [], inbound_rules: [], outbound_rules: [] }]))).code).toBe(0);
    // The same object as an older tool might have written it: today this rule is refused …
    const stale = "kind: Profile\nid: old\ninbound_rules:\n  - {protocol: 44}\n";
    expect((await ctl(["apply", "-f", "-"], stale)).code).toBe(1);
    // … but deleting by that file works.
    const r = await ctl(["delete", "-f", "-"], stale);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("deleted 1 object(s)");
    const bad = await ctl(["delete", "-f", "-"], "kind: Endpoint\nhost: hv1\nid: x\n");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("document 1: orchestrator");
  });

  it("exits 2 on usage errors and 1 when the controller is unreachable", async () => {
    expect((await ctl(["frobnicate"])).code).toBe(2);
    expect((await ctl(["get"])).code).toBe(2);
    expect((await ctl(["delete", "endpoint", "not-a-key"])).code).toBe(2);
    expect((await ctl(["wait", "--timeout", "-3"])).code).toBe(2);
    const down = await palisadectl("127.0.0.1:1", ["status"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("cannot reach the controller");
  });

  it("status -o json and wait with no hosts connected", async () => {
    const s = await ctl(["status", "-o", "json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ hosts: [], endpoints: [] });
    const w = await ctl(["wait", "--timeout", "5"]);
    expect(w.code).toBe(0);
  });
});
