// The seed example (DESIGN §3.1) through the calculation graph: the exact
// desired state of each host.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { MARK, endpoint, jumps, keyOf, profile } from "../support/model.js";
import { CHAINS_LAYOUT } from "../support/layouts.js";

const db = profile({
  id: "db", tags: ["db"],
  inbound_rules: [{ action: "allow", protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }],
  outbound_rules: [{ action: "allow" }],
});
const app = profile({ id: "app", tags: ["db-user"], outbound_rules: [{ action: "allow" }] });
const dbVm = endpoint({
  host: "hv1", workload: "vm-1", id: "port-1", name: "tap-db1", mac: "02:00:00:00:00:01",
  ipv4_nets: ["198.18.1.2/32"], profile_ids: ["db"],
});
const appVm = endpoint({
  host: "hv2", workload: "vm-2", id: "port-2", name: "tap-app1",
  ipv4_nets: ["198.18.2.3"], ipv6_nets: ["2001:db8::23"], profile_ids: ["app"],
});

function commonChains(iface: string, family: 4 | 6) {
  return {
    [`${family}:pal-wl-to-host`]: ["-j DROP"],
    [`${family}:pal-from-wl-dispatch`]: [`-i ${iface} -g pal-fw-${iface}`, "-j DROP"],
    [`${family}:pal-to-wl-dispatch`]: [`-o ${iface} -g pal-tw-${iface}`, "-j DROP"],
  };
}

describe("calc graph: the seed example", () => {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink, CHAINS_LAYOUT);
  g.upsertProfile(db);
  g.upsertProfile(app);
  g.upsertEndpoint(dbVm);
  g.upsertEndpoint(appVm);
  g.flush(7);

  it("hands each host its updates once per flush, with the revision", () => {
    expect(sink.calls.map((c) => [c.host, c.revision]).sort()).toEqual([["hv1", 7], ["hv2", 7]]);
    expect(sink.violations()).toEqual([]);
  });

  it("hv1 (the db endpoint) gets the db-user sets, the db chains and its endpoint chains", () => {
    expect(sink.state("hv1").plain()).toEqual({
      sets: {
        "pal4t-db-user": { family: 4, members: ["198.18.2.3"] },
        "pal6t-db-user": { family: 6, members: ["2001:db8::23"] },
      },
      chains: {
        ...commonChains("tap-db1", 4),
        ...commonChains("tap-db1", 6),
        "4:pal-pi-db": [`-p tcp -m set --match-set pal4t-db-user src -m multiport --dports 5432 ${MARK.set}`, MARK.returnIfSet],
        "6:pal-pi-db": [`-p tcp -m set --match-set pal6t-db-user src -m multiport --dports 5432 ${MARK.set}`, MARK.returnIfSet],
        "4:pal-po-db": [MARK.set, MARK.returnIfSet],
        "6:pal-po-db": [MARK.set, MARK.returnIfSet],
        "4:pal-tw-tap-db1": jumps("pi", ["db"]),
        "6:pal-tw-tap-db1": jumps("pi", ["db"]),
        "4:pal-fw-tap-db1": [
          "-m mac ! --mac-source 02:00:00:00:00:01 -j DROP",
          "! -s 198.18.1.2 -j DROP",
          ...jumps("po", ["db"]),
        ],
        // no IPv6 address: everything from the workload in IPv6 is dropped
        "6:pal-fw-tap-db1": ["-m mac ! --mac-source 02:00:00:00:00:01 -j DROP", "-j DROP"],
      },
      endpoints: { [keyOf(dbVm)]: "tap-db1" },
    });
  });

  it("hv2 (no endpoint using db) has no db-user set and no db chains", () => {
    const st = sink.state("hv2").plain();
    expect(st.sets).toEqual({});
    expect(Object.keys(st.chains).filter((k) => k.includes("-db"))).toEqual([]);
    expect(st).toEqual({
      sets: {},
      chains: {
        ...commonChains("tap-app1", 4),
        ...commonChains("tap-app1", 6),
        "4:pal-pi-app": [],
        "6:pal-pi-app": [],
        "4:pal-po-app": [MARK.set, MARK.returnIfSet],
        "6:pal-po-app": [MARK.set, MARK.returnIfSet],
        "4:pal-tw-tap-app1": jumps("pi", ["app"]),
        "6:pal-tw-tap-app1": jumps("pi", ["app"]),
        "4:pal-fw-tap-app1": ["! -s 198.18.2.3 -j DROP", ...jumps("po", ["app"])],
        "6:pal-fw-tap-app1": ["! -s 2001:db8::23 -j DROP", ...jumps("po", ["app"])],
      },
      endpoints: { [keyOf(appVm)]: "tap-app1" },
    });
  });

  it("the snapshot of each host equals the incrementally built state", () => {
    for (const h of ["hv1", "hv2"]) expect(snapshotState(g, h).plain()).toEqual(sink.state(h).plain());
    expect(g.snapshot("hv1").revision).toBe(7);
  });

  it("a host without endpoints has only fail-closed entry chains", () => {
    const st = snapshotState(g, "hv-empty").plain();
    expect(st).toEqual({
      sets: {},
      chains: Object.fromEntries([4, 6].flatMap((f) => [
        [`${f}:pal-wl-to-host`, ["-j DROP"]],
        [`${f}:pal-from-wl-dispatch`, ["-j DROP"]],
        [`${f}:pal-to-wl-dispatch`, ["-j DROP"]],
      ])),
      endpoints: {},
    });
  });

  it("workloadToHost 'accept' renders the wl-to-host chain through the from-workload dispatch", () => {
    const g2 = new CalcGraph(new RecordingSink(), { ...CHAINS_LAYOUT, workloadToHost: "accept" });
    expect(snapshotState(g2, "hv1").chain(4, "pal-wl-to-host")).toEqual(["-j pal-from-wl-dispatch", "-j ACCEPT"]);
  });

  it("exposes the model it holds", () => {
    expect(g.hasProfile("db")).toBe(true);
    expect(g.hasProfile("nope")).toBe(false);
    expect([...g.profileIds()].sort()).toEqual(["app", "db"]);
    expect([...g.endpointKeys()].sort()).toEqual([keyOf(dbVm), keyOf(appVm)].sort());
    expect(g.getEndpoint(keyOf(dbVm))).toEqual(dbVm);
    expect(g.getProfile("app")).toEqual(app);
    expect(g.currentRevision).toBe(7);
  });
});
