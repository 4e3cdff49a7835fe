// The ML2 driver's change notices (DESIGN §11.11): the body the adapter
// accepts (ml2-endpoint.ts, parseChangeNotice) and what it keeps until the
// watch's next poll (pending-changes.ts): coalesced, bounded, overflow to a
// full listing.
import { describe, expect, it } from "vitest";
import { ML2_LIMITS, parseChangeNotice } from "../../services/openstack/ml2-endpoint.js";
import { createPendingChanges, PENDING_LIMIT, type Change } from "../../services/openstack/pending-changes.js";

const ID = (n: number) => `00000000-0000-4000-8000-${n.toString().padStart(12, "0")}`;

describe("parseChangeNotice: a notice is checked whole", () => {
  it("accepts the batch format: ports, groups, rules with their group, address groups; overflow", () => {
    const body = {
      changes: [
        { resource: "port", id: ID(1) }, { resource: "security_group", id: ID(2) },
        { resource: "security_group_rule", id: ID(3), group: ID(2) }, { resource: "address_group", id: ID(4) },
      ],
      overflow: true,
    };
    expect(parseChangeNotice(body)).toEqual({ changes: body.changes, overflow: true, unknown: false });
    expect(parseChangeNotice({ changes: [] })).toEqual({ changes: [], overflow: false, unknown: false });
    // The driver repeats its first change at the top level for an older adapter: ignored here.
    expect(parseChangeNotice({ changes: [{ resource: "port", id: ID(1) }], overflow: false, resource: "port", id: ID(1) }))
      .toEqual({ changes: [{ resource: "port", id: ID(1) }], overflow: false, unknown: false });
  });

  it("accepts a network log's notice (the log driver's, DESIGN §11.13): it wakes the watch and names nothing to fetch", () => {
    expect(parseChangeNotice({ changes: [{ resource: "log", id: ID(9) }], overflow: false })).toEqual({ changes: [{ resource: "log", id: ID(9) }], overflow: false, unknown: false });
    const pending = createPendingChanges();
    pending.add([{ resource: "log", id: ID(9) }]);
    expect(pending.take()).toBeUndefined(); // the ordinary poll, which reads the logs
  });

  it("accepts the first format ({resource, id}) as 'something changed' (the feed's poll)", () => {
    expect(parseChangeNotice({ resource: "port", id: ID(1) })).toEqual({ changes: [], overflow: false, unknown: true });
  });

  it.each([
    [null, /expected/],
    [[], /expected/],
    [{}, /expected/],
    [{ changes: "port" }, /changes: not a list/],
    [{ changes: [], overflow: "yes" }, /overflow: not true or false/],
    [{ changes: [{ resource: "nova_server", id: ID(1) }] }, /changes\[0\]\.resource: one of/],
    [{ changes: [{ resource: "port", id: "../../x" }] }, /changes\[0\]\.id: not a Neutron id/],
    [{ changes: [{ resource: "port", id: ID(1) }, { resource: "security_group_rule", id: ID(2) }] }, /changes\[1\]\.group/],
    [{ changes: [{ resource: "security_group_rule", id: ID(2), group: "a b" }] }, /changes\[0\]\.group/],
    [{ changes: [{ resource: "port", id: ID(1), group: ID(2) }] }, /only a security_group_rule names its group/],
    [{ changes: [7] }, /changes\[0\]: expected/],
    [{ resource: "port" }, /id: not a Neutron id/],
    [{ resource: "nova", id: ID(1) }, /resource: one of/],
  ])("refuses %j", (body, reason) => {
    expect(() => parseChangeNotice(body)).toThrow(reason);
  });

  it("refuses more than the limit of changes per notice", () => {
    const changes = Array.from({ length: ML2_LIMITS.changesPerRequest + 1 }, (_, i) => ({ resource: "port", id: ID(i) }));
    expect(() => parseChangeNotice({ changes })).toThrow(/at most 1000 per notice/);
    expect(parseChangeNotice({ changes: changes.slice(1) }).changes).toHaveLength(ML2_LIMITS.changesPerRequest);
  });
});

describe("pending changes: what the next poll fetches by id", () => {
  it("coalesces: each id once; a rule's change is its group's; network/subnet or a rule without a group mean the feed's poll", () => {
    const p = createPendingChanges();
    expect(p.take()).toBeUndefined();
    const c: Change[] = [
      { resource: "port", id: "p1" }, { resource: "port", id: "p1" }, { resource: "security_group_rule", id: "r1", group: "g1" },
      { resource: "security_group_rule", id: "r2", group: "g1" }, { resource: "security_group", id: "g1" }, { resource: "address_group", id: "a1" },
    ];
    p.add(c);
    p.add([{ resource: "port", id: "p2" }]);
    const b = p.take()!;
    expect(b.full).toBe(false);
    expect(b.poll).toBe(false);
    expect([...b.ports]).toEqual(["p1", "p2"]);
    expect([...b.groups]).toEqual(["g1"]);
    expect([...b.addressGroups]).toEqual(["a1"]);
    expect(p.take()).toBeUndefined();
    p.add([{ resource: "network", id: "n1" }]);
    expect(p.take()).toMatchObject({ full: false, poll: true });
    p.add([{ resource: "security_group_rule", id: "r3" }]);
    expect(p.take()).toMatchObject({ poll: true });
    p.addUnknown();
    expect(p.take()).toMatchObject({ poll: true, full: false });
  });

  it("bounded: beyond the limit of distinct ids, or when the driver says overflow, a full listing and no ids kept", () => {
    const p = createPendingChanges(3);
    p.add([{ resource: "port", id: "p1" }, { resource: "port", id: "p2" }, { resource: "security_group", id: "g1" }]);
    // The same ids again do not count.
    p.add([{ resource: "port", id: "p1" }, { resource: "security_group_rule", id: "r1", group: "g1" }]);
    expect(p.size()).toBe(3);
    const ok = p.take()!;
    expect(ok.full).toBe(false);
    expect(ok.ports.size + ok.groups.size).toBe(3);
    p.add([{ resource: "port", id: "p1" }, { resource: "port", id: "p2" }, { resource: "port", id: "p3" }, { resource: "port", id: "p4" }]);
    expect(p.size()).toBe(0);
    p.add([{ resource: "port", id: "p5" }]);
    expect(p.size()).toBe(0);
    const over = p.take()!;
    expect(over.full).toBe(true);
    expect(over.ports.size).toBe(0);
    expect(p.take()).toBeUndefined();
    p.add([{ resource: "port", id: "p1" }], true);
    expect(p.take()).toMatchObject({ full: true });
    expect(PENDING_LIMIT).toBe(ML2_LIMITS.changesPerRequest);
  });
});
