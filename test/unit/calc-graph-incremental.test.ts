// Incrementality (DESIGN §7): a change touches only the hosts it affects,
// and only the objects it affects on them.
import { beforeEach, describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import type { HostUpdate } from "../../services/calc/desired-state.js";
import { positionSet, profileKey } from "../../services/calc/names.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { endpoint, keyOf, profile } from "../support/model.js";

const db = profile({ id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{}] });
const app = profile({ id: "app", tags: ["db-user"], outbound_rules: [{}] });
const other = profile({ id: "other", tags: ["other"], inbound_rules: [{}] });

const a1 = endpoint({ host: "hvA", workload: "w", id: "a1", name: "tap-a1", profile_ids: ["db"], ipv4_nets: ["198.18.1.1"] });
const b1 = endpoint({ host: "hvB", workload: "w", id: "b1", name: "tap-b1", profile_ids: ["app"], ipv4_nets: ["198.18.2.1"] });
const c1 = endpoint({ host: "hvC", workload: "w", id: "c1", name: "tap-c1", profile_ids: ["other"], ipv4_nets: ["198.18.3.1"] });
const d1 = endpoint({ host: "hvD", workload: "w", id: "d1", name: "tap-d1", profile_ids: ["other"], ipv4_nets: ["198.18.4.1"] });
const c2 = endpoint({ host: "hvC", workload: "w", id: "c2", name: "tap-c2", profile_ids: ["app"], ipv4_nets: ["198.18.3.2"], ipv6_nets: ["2001:db8::32"] });

/** The class of endpoints whose ordered profile list is [app] (DESIGN §6.5). */
const APP = profileKey("app");

const label = (u: HostUpdate) =>
  u.type === "chain-update" ? `${u.type} ${u.chain.family}:${u.chain.name}`
  : u.type === "chain-remove" || u.type === "ipset-update" || u.type === "ipset-delta" || u.type === "ipset-remove" ? `${u.type} ${u.family}:${u.name}`
  : `${u.type} ${u.key}`;

describe("calc graph: incrementality", () => {
  let sink: RecordingSink;
  let g: CalcGraph;
  let mark: number;
  const since = () => sink.callsSince(mark);
  const hostsTouched = () => [...new Set(since().map((c) => c.host))].sort();
  const updatesFor = (h: string) => since().filter((c) => c.host === h).flatMap((c) => c.updates);

  beforeEach(() => {
    sink = new RecordingSink();
    g = new CalcGraph(sink);
    for (const p of [db, app, other]) g.upsertProfile(p);
    for (const e of [a1, b1, c1, d1]) g.upsertEndpoint(e);
    g.flush(1);
    mark = sink.calls.length;
  });

  it("adding one endpoint touches its host and the hosts referencing its tags, nothing else", () => {
    g.upsertEndpoint(c2);
    g.flush(2);
    // c2 has tag db-user (via app); only hvA references db-user (db's inbound rule).
    expect(hostsTouched()).toEqual(["hvA", "hvC"]);
    expect(since().every((c) => c.revision === 2)).toBe(true);
    expect(updatesFor("hvA")).toEqual([
      { type: "ipset-delta", name: "pal4t-db-user", family: 4, added: ["198.18.3.2"], removed: [] },
      { type: "ipset-delta", name: "pal6t-db-user", family: 6, added: ["2001:db8::32"], removed: [] },
    ]);
    const hvC = updatesFor("hvC").map(label).sort();
    // A profile new at position 0 on the host: its position sets, the
    // position's chains gaining its line (and their mirrored twins, DESIGN
    // §6.5), the profile's chains and mirrored chains; the endpoint's members.
    // The roots and workload chains are static: not re-sent.
    expect(hvC).toEqual([
      "chain-update 4:pal-cf0", "chain-update 4:pal-ct0", "chain-update 4:pal-rf0", "chain-update 4:pal-rt0",
      "chain-update 4:pal-pi-app", "chain-update 4:pal-po-app", "chain-update 4:pal-qi-app", "chain-update 4:pal-qo-app",
      "chain-update 6:pal-cf0", "chain-update 6:pal-ct0", "chain-update 6:pal-rf0", "chain-update 6:pal-rt0",
      "chain-update 6:pal-pi-app", "chain-update 6:pal-po-app", "chain-update 6:pal-qi-app", "chain-update 6:pal-qo-app",
      `endpoint-update ${keyOf(c2)}`,
      "ipset-delta 4:pal4i-active", "ipset-delta 4:pal4i-nomac", "ipset-delta 6:pal6i-active",
      `ipset-update 4:pal4ip0_${APP}`, `ipset-update 6:pal6ip0_${APP}`,
    ].sort());
    // c1's chains and the "other" profile's chains were not re-sent
    expect(hvC.some((l) => l.includes("tap-c1") || l.includes("-other"))).toBe(false);
  });

  it("removing that endpoint again touches the same hosts only", () => {
    g.upsertEndpoint(c2);
    g.flush(2);
    mark = sink.calls.length;
    g.deleteEndpoint(keyOf(c2));
    g.flush(3);
    expect(hostsTouched()).toEqual(["hvA", "hvC"]);
    expect(updatesFor("hvA")).toEqual([
      { type: "ipset-delta", name: "pal4t-db-user", family: 4, added: [], removed: ["198.18.3.2"] },
      { type: "ipset-delta", name: "pal6t-db-user", family: 6, added: [], removed: ["2001:db8::32"] },
    ]);
    expect(updatesFor("hvC").map(label).sort()).toEqual([
      "chain-remove 4:pal-pi-app", "chain-remove 4:pal-po-app", "chain-remove 4:pal-qi-app", "chain-remove 4:pal-qo-app",
      "chain-remove 6:pal-pi-app", "chain-remove 6:pal-po-app", "chain-remove 6:pal-qi-app", "chain-remove 6:pal-qo-app",
      "chain-update 4:pal-cf0", "chain-update 4:pal-ct0", "chain-update 4:pal-rf0", "chain-update 4:pal-rt0",
      "chain-update 6:pal-cf0", "chain-update 6:pal-ct0", "chain-update 6:pal-rf0", "chain-update 6:pal-rt0",
      `endpoint-remove ${keyOf(c2)}`,
      "ipset-delta 4:pal4i-active", "ipset-delta 4:pal4i-nomac", "ipset-delta 6:pal6i-active",
      `ipset-remove 4:pal4ip0_${APP}`, `ipset-remove 6:pal6ip0_${APP}`,
    ].sort());
  });

  it("changing one profile's rules emits only that profile's changed chains, on the hosts using it", () => {
    g.upsertProfile({ ...db, inboundRules: [{ ...db.inboundRules[0]!, match: { ...db.inboundRules[0]!.match, dstPorts: [{ first: 5433, last: 5433 }] } }] });
    g.flush(2);
    expect(hostsTouched()).toEqual(["hvA"]);
    // the outbound chains did not change: not re-sent; the inbound one and its mirror did
    expect(updatesFor("hvA").map(label)).toEqual(["chain-update 4:pal-pi-db", "chain-update 4:pal-qi-db", "chain-update 6:pal-pi-db", "chain-update 6:pal-qi-db"]);
    expect(sink.state("hvA").chain(4, "pal-pi-db")![0]).toContain("--dports 5433");
    expect(sink.state("hvA").chain(4, "pal-qi-db")![0]).toContain("--sports 5433");
  });

  it("a profile used by two endpoints on one host is sent once", () => {
    const a2 = endpoint({ host: "hvA", workload: "w", id: "a2", name: "tap-a2", profile_ids: ["db"], ipv4_nets: ["198.18.1.2"] });
    g.upsertEndpoint(a2);
    g.flush(2);
    mark = sink.calls.length;
    g.upsertProfile({ ...db, outboundRules: [] });
    g.flush(3);
    expect(updatesFor("hvA").map(label)).toEqual(["chain-update 4:pal-po-db", "chain-update 4:pal-qo-db", "chain-update 6:pal-po-db", "chain-update 6:pal-qo-db"]);
  });

  it("a rule change that references a new tag sends that set to the hosts using the profile only", () => {
    g.upsertProfile({ ...other, inboundRules: [{ action: "allow", match: { srcTag: "db" }, negated: {} }] });
    g.flush(2);
    expect(hostsTouched()).toEqual(["hvC", "hvD"]);
    for (const h of ["hvC", "hvD"]) {
      expect(updatesFor(h).map(label)).toEqual([
        "ipset-update 4:pal4t-db", "ipset-update 6:pal6t-db", "chain-update 4:pal-pi-other", "chain-update 4:pal-qi-other",
        "chain-update 6:pal-pi-other", "chain-update 6:pal-qi-other",
      ]);
      // The mirror matches the tag on the other side (a reply's destination).
      expect(sink.state(h).chain(4, "pal-qi-other")![0]).toContain("--match-set pal4t-db dst");
      // a1 (tag db via profile db) is the only v4 member; nobody has a v6 address with tag db
      expect(sink.state(h).sets.get("pal4t-db")?.members).toEqual(new Set(["198.18.1.1"]));
      expect(sink.state(h).sets.get("pal6t-db")?.members).toEqual(new Set());
    }
  });

  it("changing a profile's tags touches only hosts referencing the old or new tags", () => {
    g.upsertProfile({ ...app, tags: ["db-user", "unreferenced"] });
    g.flush(2);
    expect(hostsTouched().every((h) => h === "hvA")).toBe(true);
    expect(sink.state("hvA").sets.get("pal4t-db-user")?.members).toEqual(new Set(["198.18.2.1"]));
    mark = sink.calls.length;
    g.upsertProfile({ ...app, tags: ["unreferenced"] });
    g.flush(3);
    expect(hostsTouched()).toEqual(["hvA"]);
    expect(updatesFor("hvA")).toEqual([{ type: "ipset-delta", name: "pal4t-db-user", family: 4, added: [], removed: ["198.18.2.1"] }]);
  });

  it("an endpoint change that does not affect addresses or tags touches only its own host", () => {
    g.upsertEndpoint({ ...b1, mac: "02:00:00:00:00:99" });
    g.flush(2);
    expect(hostsTouched()).toEqual(["hvB"]);
    // Its IPv4 address leaves the no-MAC set for a MAC set (the first of its /16 here: created, and listed).
    expect(updatesFor("hvB").map(label).sort()).toEqual([
      `endpoint-update ${keyOf(b1)}`, "ipset-delta 4:pal4i-nomac", "ipset-delta 4:pal4mac", "ipset-update 4:pal4m-198-18",
    ]);
    expect(sink.state("hvB").sets.get("pal4m-198-18")?.members).toEqual(new Set(["198.18.2.1,02:00:00:00:00:99"]));
  });

  it("adding one endpoint to a host with 300 endpoints sends its set members only", () => {
    for (let i = 0; i < 300; i++) {
      g.upsertEndpoint(endpoint({
        host: "hvBig", workload: "w", id: `e${i}`, name: `tap${(i * 2654435761 >>> 0).toString(16).padStart(8, "0")}`,
        profile_ids: ["other"], ipv4_nets: [`198.19.${i >> 8}.${i & 255}`],
      }));
    }
    g.flush(2);
    mark = sink.calls.length;
    const extra = endpoint({ host: "hvBig", workload: "w", id: "extra", name: "tapffffffff", profile_ids: ["other"], ipv4_nets: ["198.19.9.9"] });
    g.upsertEndpoint(extra);
    g.flush(3);
    expect(hostsTouched()).toEqual(["hvBig"]);
    // Its profile is in use at its position on the host: set members only, no chain at all (DESIGN §6.5).
    expect(updatesFor("hvBig")).toEqual([
      { type: "ipset-delta", name: "pal4i-active", family: 4, added: ["198.19.9.9,tapffffffff"], removed: [] },
      { type: "ipset-delta", name: positionSet(0, profileKey("other"), 4), family: 4, added: ["198.19.9.9,tapffffffff"], removed: [] },
      { type: "ipset-delta", name: "pal4i-nomac", family: 4, added: ["198.19.9.9,tapffffffff"], removed: [] },
      { type: "endpoint-update", key: keyOf(extra), interfaceName: "tapffffffff" },
    ]);
    expect(snapshotState(g, "hvBig").plain()).toEqual(sink.state("hvBig").plain());
  });
});
