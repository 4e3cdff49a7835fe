// The seed example (DESIGN §3.1) through the calculation graph: the exact
// desired state of each host.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { DEFAULT_CALC_CONFIG } from "../../services/calc/index.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { MARK, divert, endpoint, keyOf, profile } from "../support/model.js";
import { profileKey } from "../../services/calc/names.js";

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

const DB = profileKey("db");
const APP = profileKey("app");

/**
 * A host's entry and workload chains (DESIGN §6.5) with the profiles its
 * endpoints have at position 0 (lists of one here), and the MAC check, in
 * one family.
 */
function entryChains(family: 4 | 6, first: string[]) {
  const root = (flag: string, next: string) => [
    `-m set --match-set pal${family}i-inactive ${flag} -j DROP`,
    `-m set --match-set pal${family}i-active ${flag} -g ${next}`,
    "-j DROP",
  ];
  const positions = (chain: string) => (first.length ? [`-j ${chain}0`, MARK.returnIfSet] : []);
  // A position's lines, then DROP: no profile there is default deny.
  const position = (flag: string, kind: string) => [...first.map((id) => `-m set --match-set pal${family}ip0_${profileKey(id)} ${flag} -g pal-${kind}-${id}`), "-j DROP"];
  return {
    [`${family}:pal-wl-to-host`]: ["-j DROP"],
    [`${family}:pal-from-wl-dispatch`]: root("src,src", "pal-cf"),
    [`${family}:pal-to-wl-dispatch`]: root("dst,dst", "pal-ct"),
    [`${family}:pal-cf`]: [divert("pal-rf"), "-j pal-from-wl-mac", MARK.clear, ...positions("pal-cf"), "-j DROP"],
    [`${family}:pal-ct`]: [divert("pal-rt"), MARK.clear, ...positions("pal-ct"), "-j DROP"],
    [`${family}:pal-rf`]: [MARK.clear, ...positions("pal-rf"), "-j DROP"],
    [`${family}:pal-rt`]: [MARK.clear, ...positions("pal-rt"), "-j DROP"],
    ...(first.length ? {
      [`${family}:pal-cf0`]: position("src,src", "po"),
      [`${family}:pal-ct0`]: position("dst,dst", "pi"),
      // The mirrored re-check: a reply leaving the workload, its inbound rules; reaching it, its outbound ones.
      [`${family}:pal-rf0`]: position("src,src", "qi"),
      [`${family}:pal-rt0`]: position("dst,dst", "qo"),
    } : {}),
    // IPv4 MACs are in MAC sets; IPv6 ones in the interface tree (empty here).
    ...(family === 4
      ? { "4:pal-from-wl-mac": ["-m set --match-set pal4i-nomac src,src -j RETURN", "-m set ! --match-set pal4mac src,src -j DROP"] }
      : { "6:pal-from-wl-mac": ["-j pal-from-wl-mact"], "6:pal-from-wl-mact": [] }),
  };
}

/** The sets every host has, empty. */
const LAYOUT_SETS = {
  "pal4i-inactive": { family: 4, members: [] },
  "pal6i-inactive": { family: 6, members: [] },
  "pal4i-active": { family: 4, members: [] },
  "pal6i-active": { family: 6, members: [] },
  "pal4i-nomac": { family: 4, members: [] },
  pal4mac: { family: 4, members: [] },
};

describe("calc graph: the seed example", () => {
  const sink = new RecordingSink();
  const g = new CalcGraph(sink);
  g.upsertProfile(db);
  g.upsertProfile(app);
  g.upsertEndpoint(dbVm);
  g.upsertEndpoint(appVm);
  g.flush(7);

  it("hands each host its updates once per flush, with the revision", () => {
    expect(sink.calls.map((c) => [c.host, c.revision]).sort()).toEqual([["hv1", 7], ["hv2", 7]]);
    expect(sink.violations()).toEqual([]);
  });

  it("hv1 (the db endpoint) gets the db-user sets, the db chains, its class and its MAC", () => {
    expect(sink.state("hv1").plain()).toEqual({
      sets: {
        "pal4t-db-user": { family: 4, members: ["198.18.2.3"] },
        "pal6t-db-user": { family: 6, members: ["2001:db8::23"] },
        ...LAYOUT_SETS,
        pal4mac: { family: 4, members: ["pal4m-198-18"] },
        "pal4m-198-18": { family: 4, members: ["198.18.1.2,02:00:00:00:00:01"] },
        "pal4i-active": { family: 4, members: ["198.18.1.2,tap-db1"] },
        [`pal4ip0_${DB}`]: { family: 4, members: ["198.18.1.2,tap-db1"] },
        // no IPv6 address: nothing from or to the workload in IPv6 reaches its profiles
        [`pal6ip0_${DB}`]: { family: 6, members: [] },
      },
      chains: {
        ...entryChains(4, ["db"]),
        ...entryChains(6, ["db"]),
        "4:pal-pi-db": [`-p tcp -m set --match-set pal4t-db-user src -m multiport --dports 5432 ${MARK.set}`, MARK.returnIfSet],
        "6:pal-pi-db": [`-p tcp -m set --match-set pal6t-db-user src -m multiport --dports 5432 ${MARK.set}`, MARK.returnIfSet],
        "4:pal-po-db": [MARK.set, MARK.returnIfSet],
        "6:pal-po-db": [MARK.set, MARK.returnIfSet],
        // The mirrored chains (DESIGN §6.5): source and destination swapped.
        "4:pal-qi-db": [`-p tcp -m set --match-set pal4t-db-user dst -m multiport --sports 5432 ${MARK.set}`, MARK.returnIfSet],
        "6:pal-qi-db": [`-p tcp -m set --match-set pal6t-db-user dst -m multiport --sports 5432 ${MARK.set}`, MARK.returnIfSet],
        "4:pal-qo-db": [MARK.set, MARK.returnIfSet],
        "6:pal-qo-db": [MARK.set, MARK.returnIfSet],
      },
      endpoints: { [keyOf(dbVm)]: "tap-db1" },
    });
  });

  it("hv2 (no endpoint using db) has no db-user set and no db chains", () => {
    const st = sink.state("hv2").plain();
    expect(Object.keys(st.sets).filter((k) => k.includes("db"))).toEqual([]);
    expect(Object.keys(st.chains).filter((k) => k.includes("-db"))).toEqual([]);
    expect(st).toEqual({
      sets: {
        ...LAYOUT_SETS,
        // no MAC: its IPv4 address skips the MAC sets
        "pal4i-nomac": { family: 4, members: ["198.18.2.3,tap-app1"] },
        "pal4i-active": { family: 4, members: ["198.18.2.3,tap-app1"] },
        "pal6i-active": { family: 6, members: ["2001:db8::23,tap-app1"] },
        [`pal4ip0_${APP}`]: { family: 4, members: ["198.18.2.3,tap-app1"] },
        [`pal6ip0_${APP}`]: { family: 6, members: ["2001:db8::23,tap-app1"] },
      },
      chains: {
        ...entryChains(4, ["app"]),
        ...entryChains(6, ["app"]),
        "4:pal-pi-app": [],
        "6:pal-pi-app": [],
        "4:pal-po-app": [MARK.set, MARK.returnIfSet],
        "6:pal-po-app": [MARK.set, MARK.returnIfSet],
        "4:pal-qi-app": [],
        "6:pal-qi-app": [],
        "4:pal-qo-app": [MARK.set, MARK.returnIfSet],
        "6:pal-qo-app": [MARK.set, MARK.returnIfSet],
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
    expect(st).toEqual({ sets: LAYOUT_SETS, chains: { ...entryChains(4, []), ...entryChains(6, []) }, endpoints: {} });
  });

  it("workloadToHost 'accept' renders the wl-to-host chain through the from-workload dispatch, accepting through the driver's pal-ct-admit (DESIGN §6.14)", () => {
    const g2 = new CalcGraph(new RecordingSink(), { ...DEFAULT_CALC_CONFIG, workloadToHost: "accept" });
    expect(snapshotState(g2, "hv1").chain(4, "pal-wl-to-host")).toEqual(["-j pal-from-wl-dispatch", "-g pal-ct-admit"]);
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
