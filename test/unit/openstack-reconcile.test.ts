// Reconciliation plans (reconcile.ts) and the port-status mapping (port-status.ts).
import { describe, expect, it } from "vitest";
import { EndpointState, type EndpointStatus, type HostStatus } from "../../services/gen/palisade/status/v1/status.js";
import type { Endpoint, ModelObject, Profile } from "../../services/model/index.js";
import { isOwned, planReconcile, stepsInOrder, type StoredObject } from "../../services/openstack/reconcile.js";
import { portStatus, portStatusRows } from "../../services/openstack/port-status.js";

const owner = { "palisade.io/owner": "openstack" };
const profile = (id: string, extra: Partial<Profile> = {}): ModelObject => ({
  kind: "Profile", profile: { id, tags: [id], inboundRules: [], outboundRules: [{ action: "allow", match: {}, negated: {} }], labels: owner, ...extra },
});
const endpoint = (id: string, extra: Partial<Endpoint> = {}): ModelObject => ({
  kind: "Endpoint",
  endpoint: { host: "hv1", orchestrator: "openstack", workload: "vm", id, name: `tap${id}`, state: "active", ipv4Nets: ["198.18.0.1/32"], ipv6Nets: [], profileIds: ["g1"], labels: owner, ...extra },
});
const stored = (object: ModelObject, revision: number): StoredObject => ({ object, revision });

describe("planReconcile", () => {
  it("creates what is missing (must not exist), updates what differs (at the revision read), deletes what it owns and Neutron dropped", () => {
    const plan = planReconcile(
      [profile("g1"), profile("g2", { tags: ["g2", "x"] }), endpoint("p1"), endpoint("p2")],
      [stored(profile("g2"), 7), stored(endpoint("p1"), 8), stored(endpoint("gone"), 9), stored(profile("old"), 10)],
    );
    expect(plan.conflicts).toEqual([]);
    expect(plan.unchanged).toBe(1);
    expect(plan.writes.map((w) => [w.action, w.object.kind === "Profile" ? w.object.profile.id : w.object.endpoint.id, w.expectedRevision])).toEqual([
      ["create", "g1", 0], ["update", "g2", 7], ["create", "p2", 0],
    ]);
    // Endpoints go before the profiles they may use.
    expect(plan.deletes).toEqual([
      { ref: { kind: "Endpoint", key: expect.objectContaining({ id: "gone" }) }, expectedRevision: 9 },
      { ref: { kind: "Profile", id: "old" }, expectedRevision: 10 },
    ]);
  });

  it("never touches what it does not own; an unowned object in the way is a conflict", () => {
    const mine = profile("g1");
    const theirs: ModelObject = { kind: "Profile", profile: { ...(profile("g1") as { profile: Profile }).profile, labels: {} } };
    const k8s = endpoint("k", { orchestrator: "k8s", labels: {} });
    const labelledButOtherOrchestrator = endpoint("z", { orchestrator: "k8s" });
    const plan = planReconcile([mine], [stored(theirs, 3), stored(k8s, 4), stored(labelledButOtherOrchestrator, 5), stored(profile("manual", { labels: {} }), 6)]);
    expect(plan.conflicts).toEqual(["profile g1 exists and is not owned by the OpenStack adapter (no label palisade.io/owner=openstack); refusing to overwrite it"]);
    expect(plan.deletes).toEqual([]);
    expect(plan.writes).toEqual([]);
  });

  it("a second plan over its own result is empty", () => {
    const desired = [profile("g1"), endpoint("p1")];
    const plan = planReconcile(desired, desired.map((o, i) => stored(o, i + 1)));
    expect(plan).toEqual({ writes: [], deletes: [], unchanged: 2, conflicts: [] });
  });

  it("ownership needs the label (and, for endpoints, orchestrator openstack)", () => {
    expect(isOwned(profile("a"))).toBe(true);
    expect(isOwned(profile("a", { labels: { "palisade.io/owner": "someone-else" } }))).toBe(false);
    expect(isOwned(endpoint("e"))).toBe(true);
    expect(isOwned(endpoint("e", { orchestrator: "k8s" }))).toBe(false);
    expect(isOwned(endpoint("e", { labels: {} }))).toBe(false);
  });
});

describe("port status (Neutron vocabulary)", () => {
  const e = (endpoint("p1") as { endpoint: Endpoint }).endpoint;
  const host = (extra: Partial<HostStatus> = {}): HostStatus => ({
    hostname: "hv1", connected: true, inSync: true, appliedRevision: 5, lastError: "", lastApplyMs: 1, driverVersion: "x",
    iptablesBackend: "nft", controller: "c", updatedUnixMs: 0, connectedUnixMs: 0, ...extra,
  });
  const st = (state: EndpointState, detail = ""): EndpointStatus => ({ endpointKey: "hv1/openstack/vm/p1", hostname: "hv1", state, detail, updatedUnixMs: 0 });

  it.each([
    ["interface up, host in sync", e, host(), st(EndpointState.ENDPOINT_STATE_UP), "ACTIVE"],
    ["admin state down", { ...e, state: "inactive" as const }, host(), st(EndpointState.ENDPOINT_STATE_UP), "DOWN"],
    ["interface down", e, host(), st(EndpointState.ENDPOINT_STATE_DOWN, "no such interface"), "DOWN"],
    ["no status yet", e, host(), undefined, "DOWN"],
    ["no driver for the host", e, undefined, st(EndpointState.ENDPOINT_STATE_UP), "DOWN"],
    ["host catching up", e, host({ inSync: false }), st(EndpointState.ENDPOINT_STATE_UP), "DOWN"],
    ["interface error", e, host(), st(EndpointState.ENDPOINT_STATE_ERROR, "not a workload interface"), "ERROR"],
    ["host's first apply failed", e, host({ inSync: false, lastError: "iptables-restore: exit 1" }), st(EndpointState.ENDPOINT_STATE_UP), "ERROR"],
    // What the controller reports after a later failure: in_sync stays, last_error is set.
    ["host's latest apply failed", e, host({ inSync: true, lastError: "iptables-restore: exit 1" }), st(EndpointState.ENDPOINT_STATE_UP), "ERROR"],
  ])("%s -> %s", (_what, ep, h, s, want) => {
    expect(portStatus(ep, h, s).status).toBe(want);
  });

  it("rows are keyed by port id and carry the reason", () => {
    const rows = portStatusRows([e, { ...e, id: "p0", name: "tapp0" }], [host({ lastError: "boom" })], [st(EndpointState.ENDPOINT_STATE_UP)]);
    expect(rows).toEqual([
      { port_id: "p0", device_id: "vm", host: "hv1", interface: "tapp0", status: "ERROR", detail: "host hv1: boom" },
      { port_id: "p1", device_id: "vm", host: "hv1", interface: "tapp1", status: "ERROR", detail: "host hv1: boom" },
    ]);
  });
});

describe("stepsInOrder (a plan split over several transactions)", () => {
  it("profiles written, endpoints deleted, updated, created, profiles deleted: an address leaves before another port takes it", () => {
    const plan = planReconcile(
      [profile("g-new"), endpoint("p-new", { ipv4Nets: ["198.18.0.5/32"] }), endpoint("p-upd", { state: "inactive" })],
      [stored(endpoint("p-old", { ipv4Nets: ["198.18.0.5/32"] }), 3), stored(endpoint("p-upd"), 4), stored(profile("g-old"), 5)],
    );
    const order = stepsInOrder(plan).map((s) => ("object" in s
      ? `${s.action} ${s.object.kind === "Profile" ? s.object.profile.id : s.object.endpoint.id}`
      : `delete ${s.ref.kind === "Profile" ? s.ref.id : s.ref.key.id}`));
    expect(order).toEqual(["create g-new", "delete p-old", "update p-upd", "create p-new", "delete g-old"]);
  });
});
