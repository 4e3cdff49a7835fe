// The change-driven watch (services/openstack/watch.ts) against a scripted
// Neutron that keeps revisions and timestamps the way the real one does
// (the real one: test/integration/openstack-neutron.test.ts). Checks what
// each poll reads — an idle poll's requests must not grow with the cloud —
// and that changes, deletions and bindings are all caught.
import { describe, expect, it } from "vitest";
import type { NeutronClient } from "../../services/openstack/neutron-client.js";
import type { NeutronBinding, NeutronPort, NeutronSecurityGroup } from "../../services/openstack/neutron-types.js";
import { createWatcher, newer, revisionMoved, type ChangeFeed, type PollResult } from "../../services/openstack/watch.js";
import { createPendingChanges, type Change } from "../../services/openstack/pending-changes.js";
import { translate } from "../../services/openstack/translate.js";

/**
 * A scripted Neutron. Its clock moves while it answers, as a real one's
 * does: every request takes `latency(what)` ms, the answer holds the state
 * as of the request's start, `during(what)` runs halfway through (a change
 * committed while the request runs), and the Date of the answer (what
 * `serverTime()` returns, as the real client does) is the clock at its end,
 * truncated to the second as an HTTP Date header is.
 */
function fakeNeutron(acceptsChangedSince: boolean) {
  let clock = Date.parse("2026-11-29T12:00:00Z");
  let lastDate: number | undefined;
  const ports = new Map<string, NeutronPort & { t: number }>();
  const groups = new Map<string, NeutronSecurityGroup & { t: number }>();
  const bindings = new Map<string, NeutronBinding[]>();
  const calls: string[] = [];
  let bytes = 0;
  const hooks: { latency: (what: string) => number; during?: (what: string) => void } = { latency: () => 0 };
  const request = <T>(what: string, read: () => T): T => {
    calls.push(what);
    const v = structuredClone(read());
    bytes += JSON.stringify(v ?? null).length;
    const took = hooks.latency(what);
    clock += Math.floor(took / 2);
    hooks.during?.(what);
    clock += took - Math.floor(took / 2);
    lastDate = Math.floor(clock / 1000) * 1000;
    return v;
  };
  const strip = <T extends { t: number }>(x: T): Omit<T, "t"> => {
    const { t: _t, ...rest } = x;
    return rest;
  };
  const since = (s: string) => Date.parse(s);
  const client: NeutronClient = {
    // Three listings, one after the other, as the real client makes them.
    async snapshot() {
      const p = request("snapshot ports", () => [...ports.values()].map(strip));
      const g = request("snapshot security_groups", () => [...groups.values()].map(strip));
      request("snapshot address_groups", () => undefined);
      return { ports: p, securityGroups: g } as never;
    },
    listSecurityGroups: async () => request("groups", () => [...groups.values()].map(strip)) as never,
    listPorts: async () => request("ports", () => [...ports.values()].map(strip)) as never,
    listAddressGroups: async () => request("address-groups", () => undefined),
    listLogs: async () => request("logs", () => undefined),
    listRevisions: async (key) => request(`revisions ${key}`, () => [...(key === "ports" ? ports : groups).values()].map((x) => {
      // As parseRevisions: a change feed needs every revision number.
      if (x.revision_number === undefined) throw new Error(`${key} ${x.id}: revision_number is required`);
      return { id: x.id, revision_number: x.revision_number };
    })),
    listChangedSince: (async (key: string, s: string) => {
      if (!acceptsChangedSince) throw new Error("400 changed_since");
      const m = key === "ports" ? ports : groups;
      // One-second timestamps, compared >= (as Neutron does).
      return request(`changed-since ${key}`, () => [...m.values()].filter((x) => Math.floor(x.t / 1000) * 1000 >= since(s)).map(strip));
    }) as NeutronClient["listChangedSince"],
    getByIds: (async (key: string, ids: string[]) => {
      const m = key === "ports" ? ports : groups;
      return request(`by-id ${key}`, () => ids.flatMap((id) => (m.has(id) ? [strip(m.get(id)!)] : [])));
    }) as NeutronClient["getByIds"],
    listBindings: async (id) => request("bindings", () => (ports.has(id) ? bindings.get(id) ?? [{ host: ports.get(id)!["binding:host_id"]!, status: "ACTIVE", vif_type: "bridge" }] : undefined)),
    supportsChangedSince: async () => request("probe", () => acceptsChangedSince),
    serverTime: () => lastDate,
    stats: () => ({ requests: calls.length, bytes, reads: { list: 0, by_id: 0, bindings: 0 } }),
  };
  return {
    client, calls, ports, groups, bindings, hooks,
    tick(ms: number) { clock += ms; },
    now: () => clock,
    /** A port created or updated now; `noRevision`: Neutron returns it without revision_number. */
    port(id: string, over: Partial<NeutronPort> = {}, opts: { noRevision?: boolean } = {}) {
      const prev = ports.get(id);
      const p: NeutronPort & { t: number } = {
        id, mac_address: "fa:16:3e:00:00:01", admin_state_up: true, device_owner: "compute:nova", device_id: `vm-${id}`,
        "binding:host_id": "hv1", "binding:vif_type": "bridge", fixed_ips: [{ ip_address: `198.18.1.${ports.size + 10}` }], security_groups: ["g"],
        ...prev, ...over, revision_number: (prev?.revision_number ?? 0) + 1, t: clock,
      };
      if (opts.noRevision) delete p.revision_number;
      ports.set(id, p);
    },
    group(id: string, rules = 0) {
      const prev = groups.get(id);
      groups.set(id, {
        id, security_group_rules: Array.from({ length: rules }, (_, i) => ({ id: `${id}-r${i}`, direction: "ingress" as const, ethertype: "IPv4" as const, protocol: "tcp", port_range_min: 80 + i, port_range_max: 80 + i })),
        revision_number: (prev?.revision_number ?? 0) + 1, t: clock,
      });
    },
  };
}

function setup(feed: ChangeFeed, ports: number) {
  const n = fakeNeutron(feed === "changed-since");
  // Every request takes a little of Neutron's time (its clock never stands still).
  n.hooks.latency = () => 40;
  n.group("g", 1);
  for (let i = 0; i < ports; i++) n.port(`p${i}`);
  const w = createWatcher({ neutron: n.client, feed: "auto", resyncMs: 300_000, deletionCheckMs: 10_000, now: n.now });
  return { n, w };
}

describe.each(["revisions", "changed-since"] as const)("watch, %s feed", (feed) => {
  it("the first poll lists everything; an idle poll's requests do not grow with the cloud (nor its bytes, with changed_since)", async () => {
    const counts: number[][] = [];
    for (const size of [10, 1000]) {
      const { n, w } = setup(feed, size);
      const first = await w.poll();
      expect(first.kind).toBe("full");
      expect(first.feed).toBe(feed);
      expect(first.input().ports).toHaveLength(size);
      n.tick(7_000); // past the cursor's lag (5 s), the Date header's second and the requests' own time
      // The first check after a listing re-reads what changed in the lag
      // window before it (here: everything, made at one instant); the next is the steady state.
      expect((await w.poll()).kind).toBe("idle");
      n.tick(1_000);
      n.calls.length = 0;
      const bytes0 = n.client.stats().bytes;
      const idle = await w.poll();
      expect(idle.kind).toBe("idle");
      counts.push([n.calls.length, n.client.stats().bytes - bytes0]);
      if (feed === "changed-since") expect(n.calls).toEqual(["changed-since ports", "changed-since security_groups", "address-groups"]);
      else expect(n.calls).toEqual(["revisions ports", "revisions security_groups", "address-groups"]);
    }
    expect(counts[0]![0]).toBe(counts[1]![0]);
    // The revisions feed reads every id and revision: linear, and said so (DESIGN §11.7).
    if (feed === "changed-since") expect(counts[0]![1]).toBe(counts[1]![1]);
    else expect(counts[1]![1]).toBeGreaterThan(50 * counts[0]![1]!);
  });

  it("a rule change, a port change and a port deletion are each caught, fetching only what changed", async () => {
    const { n, w } = setup(feed, 50);
    await w.poll();
    n.tick(1_000);
    n.group("g", 2); // a rule added: the group's revision moves
    n.calls.length = 0;
    let r = await w.poll();
    expect(r.kind).toBe("changes");
    expect(r.changed).toMatchObject({ groups: 1, ports: 0 });
    const profile = translate(r.input()).objects.find((o) => o.kind === "Profile" && o.profile.id === "g");
    expect(profile?.kind === "Profile" && profile.profile.inboundRules.length).toBe(2);
    if (feed === "revisions") expect(n.calls).toContain("by-id security_groups");

    n.tick(1_000);
    n.port("p7", { admin_state_up: false });
    r = await w.poll();
    expect(r.changed).toMatchObject({ ports: 1, groups: 0 });
    expect(r.input().ports.find((p) => p.id === "p7")!.admin_state_up).toBe(false);

    // A deleted port is gone from listings: found by the revisions listing
    // (every poll in that feed; every deletionCheckMs in the other).
    n.ports.delete("p3");
    n.tick(1_000);
    r = await w.poll();
    if (feed === "changed-since") {
      expect(r.kind).toBe("idle");
      n.tick(10_000);
      r = await w.poll();
    }
    expect(r.changed.deletedPorts).toBe(1);
    expect(r.input().ports.some((p) => p.id === "p3")).toBe(false);
  });

  it("a live migration: the inactive binding's host gets the endpoint too, until that binding goes", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    const endpointsOf = (r: Awaited<ReturnType<typeof w.poll>>) =>
      translate(r.input()).objects.flatMap((o) => (o.kind === "Endpoint" && o.endpoint.id === "p1" ? [o.endpoint.host] : []));
    // Nova: POST /ports/p1/bindings {host: hv2} — an inactive binding; the port's revision moves.
    n.tick(1_000);
    n.bindings.set("p1", [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "hv2", status: "INACTIVE", vif_type: "bridge" }]);
    n.port("p1");
    let r = await w.poll();
    expect(r.changed.bindingReads).toBe(1);
    expect(endpointsOf(r)).toEqual(["hv1", "hv2"]);
    // Activation: binding:host_id moves, the source stays INACTIVE, unbound.
    n.tick(1_000);
    n.bindings.set("p1", [{ host: "hv1", status: "INACTIVE", vif_type: "unbound" }, { host: "hv2", status: "ACTIVE", vif_type: "bridge" }]);
    n.port("p1", { "binding:host_id": "hv2" });
    r = await w.poll();
    expect(endpointsOf(r)).toEqual(["hv1", "hv2"]);
    // Nova deletes the source binding.
    n.tick(1_000);
    n.bindings.delete("p1");
    n.port("p1");
    r = await w.poll();
    expect(endpointsOf(r)).toEqual(["hv2"]);
    // An idle poll reads no bindings.
    n.tick(6_000);
    n.calls.length = 0;
    expect((await w.poll()).kind).toBe("idle");
    expect(n.calls).not.toContain("bindings");
  });

  it("a failed bindings read is not forgotten: after invalidate the full listing reads them", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    n.tick(1_000);
    n.bindings.set("p1", [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "hv2", status: "INACTIVE", vif_type: "bridge" }]);
    n.port("p1");
    const real = n.client.listBindings;
    n.client.listBindings = async () => { throw new Error("Neutron hiccup"); };
    await expect(w.poll()).rejects.toThrow(/hiccup/);
    w.invalidate();
    n.client.listBindings = real;
    const r = await w.poll();
    expect(r.kind).toBe("full");
    expect(translate(r.input()).objects.flatMap((o) => (o.kind === "Endpoint" && o.endpoint.id === "p1" ? [o.endpoint.host] : []))).toEqual(["hv1", "hv2"]);
  });

  it("after invalidate (a failed poll) the next poll lists everything again", async () => {
    const { n, w } = setup(feed, 5);
    await w.poll();
    w.invalidate();
    n.calls.length = 0;
    expect((await w.poll()).kind).toBe("full");
    expect(n.calls).toContain("snapshot ports");
  });
});

describe("watch, changed-since feed: the cursor precedes every read a poll rests on", () => {
  /** Only the cursor can find a change here: no revisions listing for a minute. */
  function cursorOnly(migrating: number) {
    const n = fakeNeutron(true);
    n.hooks.latency = () => 40;
    n.group("g", 1);
    for (let i = 0; i < 3; i++) n.port(`p${i}`);
    for (let i = 0; i < migrating; i++) {
      n.port(`m${i}`, { "binding:profile": { migrating_to: "hv2" } });
      n.bindings.set(`m${i}`, [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "hv2", status: "INACTIVE", vif_type: "bridge" }]);
    }
    const w = createWatcher({ neutron: n.client, feed: "changed-since", resyncMs: 300_000, deletionCheckMs: 60_000, now: n.now });
    return { n, w };
  }
  const rulesOf = (r: PollResult, id: string) => {
    const p = translate(r.input()).objects.find((o) => o.kind === "Profile" && o.profile.id === id);
    return p?.kind === "Profile" ? p.profile.inboundRules.length : undefined;
  };

  it("a rule deleted while a full listing reads bindings is found by the next changed_since check", async () => {
    const { n, w } = cursorOnly(5);
    // Five ports in a live migration: their bindings are read after the
    // listings, two seconds each; a rule is deleted during the first read,
    // after the groups were listed.
    n.hooks.latency = (what) => (what === "bindings" ? 2_000 : 40);
    let deleted = false;
    n.hooks.during = (what) => {
      if (what === "bindings" && !deleted) { deleted = true; n.group("g", 0); }
    };
    const first = await w.poll();
    expect(first.kind).toBe("full");
    expect(first.changed.bindingReads).toBe(5);
    expect(deleted).toBe(true);
    expect(rulesOf(first, "g")).toBe(1); // the listing was read before the deletion
    n.hooks.during = undefined;
    n.tick(1_000);
    n.calls.length = 0;
    const next = await w.poll();
    expect(n.calls.filter((c) => c.startsWith("revisions"))).toEqual([]);
    expect(next.kind).toBe("changes");
    expect(next.changed.groups).toBe(1);
    expect(rulesOf(next, "g")).toBe(0);
  });

  it("a port changed while a long changed_since listing ran is found by the next check", async () => {
    const { n, w } = cursorOnly(0);
    await w.poll();
    n.tick(7_000);
    expect((await w.poll()).kind).toBe("idle");
    n.tick(1_000);
    // A listing that takes 12 s (a page after page of changes); p1 changes
    // halfway, after the listing read it.
    n.hooks.latency = (what) => (what === "changed-since ports" ? 12_000 : 40);
    n.hooks.during = (what) => { if (what === "changed-since ports") n.port("p1", { admin_state_up: false }); };
    n.port("p0", { admin_state_up: false }); // something for this listing to return
    const during = await w.poll();
    expect(during.changed.ports).toBe(1);
    expect(during.input().ports.find((p) => p.id === "p1")!.admin_state_up).toBe(true);
    n.hooks.latency = () => 40;
    n.hooks.during = undefined;
    n.tick(1_000);
    n.calls.length = 0;
    const next = await w.poll();
    expect(n.calls.filter((c) => c.startsWith("revisions"))).toEqual([]);
    expect(next.changed.ports).toBe(1);
    expect(next.input().ports.find((p) => p.id === "p1")!.admin_state_up).toBe(false);
  });
});

describe("watch: a missing revision_number never hides a change", () => {
  const hostsOf = (r: PollResult, id: string) => translate(r.input()).objects.flatMap((o) => (o.kind === "Endpoint" && o.endpoint.id === id ? [o.endpoint.host] : []));

  it("a port listed without revision_number that changes is taken as changed, and its bindings are read again", async () => {
    const n = fakeNeutron(true);
    n.hooks.latency = () => 40;
    n.group("g", 1);
    n.port("p0");
    n.port("p1", {}, { noRevision: true });
    const w = createWatcher({ neutron: n.client, feed: "changed-since", resyncMs: 300_000, deletionCheckMs: 60_000, now: n.now });
    await w.poll();
    n.tick(7_000);
    await w.poll();
    // The port changes (still no revision number): the changed_since listing returns it.
    n.tick(1_000);
    n.port("p1", { admin_state_up: false }, { noRevision: true });
    let r = await w.poll();
    expect(r.changed.ports).toBe(1);
    expect(r.input().ports.find((p) => p.id === "p1")!.admin_state_up).toBe(false);
    // Nova creates an inactive binding on hv2 (no migrating_to here): the
    // port's updated_at moves; with no revision number to compare, its
    // bindings must be read again.
    n.tick(7_000);
    n.bindings.set("p1", [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "hv2", status: "INACTIVE", vif_type: "bridge" }]);
    n.port("p1", {}, { noRevision: true });
    r = await w.poll();
    expect(r.changed.bindingReads).toBe(1);
    expect(hostsOf(r, "p1")).toEqual(["hv1", "hv2"]);
  });

  it("revisionMoved: unknown on either side is moved", () => {
    expect([revisionMoved(1, 1), revisionMoved(1, 2), revisionMoved(undefined, 1), revisionMoved(1, undefined), revisionMoved(undefined, undefined)])
      .toEqual([false, true, true, true, true]);
  });
});

it("a migration under way when the watch starts is found by binding:profile migrating_to", async () => {
  const n = fakeNeutron(false);
  n.group("g");
  n.port("p1", { "binding:profile": { migrating_to: "hv2" } });
  n.port("p2");
  n.bindings.set("p1", [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "hv2", status: "INACTIVE", vif_type: "bridge" }]);
  const w = createWatcher({ neutron: n.client, feed: "revisions", resyncMs: 300_000, deletionCheckMs: 10_000, now: n.now });
  const r = await w.poll();
  expect(n.calls.filter((c) => c === "bindings")).toHaveLength(1); // p1 only
  const hosts = translate(r.input()).objects.flatMap((o) => (o.kind === "Endpoint" && o.endpoint.id === "p1" ? [o.endpoint.host] : []));
  expect(hosts).toEqual(["hv1", "hv2"]);
});

it("a failed inactive binding gets no endpoint", () => {
  const port: NeutronPort = {
    id: "p1", mac_address: "fa:16:3e:00:00:01", admin_state_up: true, device_owner: "compute:nova", device_id: "vm1",
    "binding:host_id": "hv1", "binding:vif_type": "bridge", fixed_ips: [{ ip_address: "198.18.1.5" }], security_groups: [],
  };
  const r = translate({
    ports: [port], securityGroups: [],
    bindings: new Map([["p1", [{ host: "hv1", status: "ACTIVE", vif_type: "bridge" }, { host: "fail-hv2", status: "INACTIVE", vif_type: "binding_failed" }]]]),
  });
  expect(r.objects.filter((o) => o.kind === "Endpoint").map((o) => o.kind === "Endpoint" && o.endpoint.host)).toEqual(["hv1"]);
});

describe.each(["revisions", "changed-since"] as const)("watch, by id (the ML2 driver's notices name what changed), %s feed", (feed) => {
  const batch = (changes: Change[], overflow = false) => {
    const p = createPendingChanges();
    p.add(changes, overflow);
    return p.take()!;
  };
  const listings = (calls: string[]) => calls.filter((c) => !c.startsWith("by-id") && c !== "bindings");
  const rulesOf = (r: PollResult, id: string) => {
    const p = translate(r.input(), { onProblem: "leave-out" }).objects.find((o) => o.kind === "Profile" && o.profile.id === id);
    return p?.kind === "Profile" ? p.profile.inboundRules.length : undefined;
  };

  it("a rule (through its group) and a port are fetched by id, nothing is listed; the requests do not grow with the cloud", async () => {
    const counts: number[] = [];
    for (const size of [10, 1000]) {
      const { n, w } = setup(feed, size);
      await w.poll();
      n.tick(1_000);
      n.group("g", 2);
      n.port("p3", { admin_state_up: false });
      n.calls.length = 0;
      const r = await w.poll(batch([{ resource: "security_group_rule", id: "g-r1", group: "g" }, { resource: "port", id: "p3" }]));
      expect(r.via).toBe("by-id");
      expect(r.kind).toBe("changes");
      expect(r.changed).toMatchObject({ ports: 1, groups: 1, deletedPorts: 0, deletedGroups: 0 });
      expect(listings(n.calls)).toEqual([]);
      expect(rulesOf(r, "g")).toBe(2);
      expect(r.input().ports.find((p) => p.id === "p3")!.admin_state_up).toBe(false);
      expect(r.input().ports).toHaveLength(size);
      // The port's revision moved: its bindings are read (a live migration's start bumps it, DESIGN §11.6).
      expect(n.calls).toEqual(["by-id ports", "by-id security_groups", "bindings"]);
      counts.push(n.calls.length);
    }
    expect(counts[0]).toBe(counts[1]);
  });

  it("an id Neutron no longer has is deleted: a port, a group", async () => {
    const { n, w } = setup(feed, 5);
    n.group("h", 1);
    await w.poll();
    n.ports.delete("p2");
    n.groups.delete("h");
    n.calls.length = 0;
    const r = await w.poll(batch([{ resource: "port", id: "p2" }, { resource: "security_group", id: "h" }]));
    expect(listings(n.calls)).toEqual([]);
    expect(r.changed).toMatchObject({ deletedPorts: 1, deletedGroups: 1 });
    expect(r.input().ports.some((p) => p.id === "p2")).toBe(false);
    expect(r.input().securityGroups.some((g) => g.id === "h")).toBe(false);
  });

  it("a read by id older than what is held does not overwrite it (the newer revision wins); the same revision is no change", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    const stale = structuredClone(n.ports.get("p1")!);
    n.tick(1_000);
    n.port("p1", { admin_state_up: false });
    // The feed's poll takes revision 2.
    let r = await w.poll();
    expect(r.input().ports.find((p) => p.id === "p1")!.admin_state_up).toBe(false);
    // A by-id read that raced it answers revision 1.
    const real = n.client.getByIds;
    n.client.getByIds = (async () => [stale]) as never;
    r = await w.poll(batch([{ resource: "port", id: "p1" }]));
    n.client.getByIds = real;
    expect(r.kind).toBe("idle");
    expect(r.input().ports.find((p) => p.id === "p1")!.admin_state_up).toBe(false);
    r = await w.poll(batch([{ resource: "port", id: "p1" }]));
    expect(r.kind).toBe("idle");
    expect([newer(2, 1), newer(2, 2), newer(2, 3), newer(undefined, 1), newer(1, undefined)]).toEqual([false, false, true, true, true]);
  });

  it("a new port with a held port's address re-reads that port by id: deleted, it goes (its own notice may come later)", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    const addr = n.ports.get("p1")!.fixed_ips[0]!.ip_address;
    n.ports.delete("p1");
    n.port("p9", { fixed_ips: [{ ip_address: addr }] });
    n.calls.length = 0;
    const r = await w.poll(batch([{ resource: "port", id: "p9" }]));
    expect(listings(n.calls)).toEqual([]);
    expect(n.calls.filter((c) => c === "by-id ports")).toHaveLength(2);
    expect(r.changed).toMatchObject({ ports: 1, deletedPorts: 1 });
    expect(r.input().ports.map((p) => p.id).sort()).toEqual(["p0", "p2", "p9"]);
  });

  it("overflow notices in a loop list the cloud at once, then at most once per 10 s; the feed's poll meanwhile, the listing when its time has come", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    const vias: string[] = [];
    for (let s = 0; s < 25; s++) {
      n.tick(1_000);
      vias.push((await w.poll(batch([], true))).via);
    }
    // One poll a second for 25 s: full at once, then about every 10 s (the
    // fake Neutron's clock also moves while it answers), the feed otherwise.
    const fulls = vias.map((v, i) => (v === "full" ? i + 1 : 0)).filter(Boolean);
    expect(fulls).toHaveLength(3);
    expect(fulls[0]).toBe(1);
    expect(fulls[1]! - fulls[0]!).toBeGreaterThanOrEqual(9);
    expect(fulls[2]! - fulls[1]!).toBeGreaterThanOrEqual(9);
    expect(vias.filter((v) => v !== "full").every((v) => v === "feed")).toBe(true);
    // Pending overflow is not forgotten: with no notice at all, the listing still comes when due.
    await w.poll(batch([], true));
    n.tick(10_000);
    expect((await w.poll()).via).toBe("full");
  });

  it("a notice on every poll does not starve the change feed: a change no notice named is found within feedMs", async () => {
    const n = fakeNeutron(feed === "changed-since");
    n.hooks.latency = () => 40;
    n.group("g", 1);
    for (let i = 0; i < 5; i++) n.port(`p${i}`);
    const w = createWatcher({ neutron: n.client, feed: "auto", resyncMs: 300_000, deletionCheckMs: 10_000, feedMs: 10_000, now: n.now });
    await w.poll();
    n.tick(7_000);
    await w.poll(); // the feed's first check after the listing
    // p4 changes and its notice is lost; p1 is noticed at every poll (a busy cloud).
    n.port("p4", { admin_state_up: false });
    const vias: string[] = [];
    let seenAfter: number | undefined;
    for (let s = 1; s <= 15 && seenAfter === undefined; s++) {
      n.tick(1_000);
      const r = await w.poll(batch([{ resource: "port", id: "p1" }]));
      vias.push(r.via);
      if (r.input().ports.find((p) => p.id === "p4")!.admin_state_up === false) seenAfter = s;
    }
    expect(seenAfter, `polls: ${vias.join(",")}`).toBeDefined();
    expect(seenAfter!).toBeLessThanOrEqual(11);
    // The polls before were by id alone: the feed runs at its interval, not every poll.
    expect(vias.slice(0, -1).every((v) => v === "by-id")).toBe(true);
  });

  it("overflow lists everything; an unknown change polls the change feed; a failure's invalidate still lists everything", async () => {
    const { n, w } = setup(feed, 3);
    await w.poll();
    n.tick(10_000);
    n.calls.length = 0;
    expect((await w.poll(batch([{ resource: "port", id: "p1" }], true))).via).toBe("full");
    expect(n.calls).toContain("snapshot ports");
    const p = createPendingChanges();
    p.add([{ resource: "port", id: "p1" }, { resource: "network", id: "n1" }]);
    expect((await w.poll(p.take())).via).toBe("feed");
    w.invalidate();
    expect((await w.poll(batch([{ resource: "port", id: "p1" }]))).via).toBe("full");
    expect((await w.poll(batch([{ resource: "port", id: "p1" }]))).via).toBe("by-id");
  });
});
