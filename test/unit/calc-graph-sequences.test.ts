// Sequence tests (DESIGN §8.4): the same final model reached through many
// update orders — permutations, reversals, interleavings, transient deletes
// and re-adds, random histories, flush after every event or once — yields
// IDENTICAL per-host states, equal to a snapshot applied to an empty state.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { RecordingSink, snapshotState } from "../support/host-state.js";
import { endpoint, profile } from "../support/model.js";
import { mulberry32, permutations, shuffle } from "../support/prng.js";
import {
  E, FINAL_ENDPOINTS, FINAL_EVENTS, FINAL_PROFILES, P, TMP_ENDPOINTS, TMP_PROFILE, dE, dP,
  expectedStates, hostsOf, randomHistory, run, statesOf, type Ev, type FlushMode,
} from "../support/sequence-model.js";

function checkRun(events: Ev[], flush: FlushMode, expected: ReturnType<typeof expectedStates>, what: string): void {
  const { sink, g } = run(events, flush);
  const hosts = hostsOf(events);
  expect(sink.violations(), what).toEqual([]);
  const got = statesOf(sink, hosts);
  for (const h of hosts) {
    // Compare canonical JSON first (fast); fall back to toEqual for a readable diff.
    const gotJson = JSON.stringify(got[h]);
    if (gotJson !== JSON.stringify(expected[h])) expect(got[h], `${what}: ${h} vs reference`).toEqual(expected[h]);
    const snap = snapshotState(g, h);
    expect(snap.violations, `${what}: ${h} snapshot`).toEqual([]);
    if (JSON.stringify(snap.plain()) !== gotJson) expect(snap.plain(), `${what}: ${h} vs own snapshot`).toEqual(got[h]);
  }
  // revisions handed to the sink never go backwards
  const revs = sink.calls.map((c) => c.revision);
  expect(revs, what).toEqual([...revs].sort((a, b) => a - b));
}

/** Tag sets only (the set-based layout adds the host's own classification sets). */
const tagSets = (sets: Record<string, unknown>) => Object.keys(sets).filter((n) => /^pal[46]t/.test(n));
/** What a host without endpoints holds. */
const emptyHost = () => snapshotState(new CalcGraph(new RecordingSink()), "nobody").plain();

describe("calc graph sequences: a small model, all orders", () => {
  const profiles = [
    profile({ id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{}] }),
    profile({ id: "app", tags: ["db-user"], inbound_rules: [{ src_tag: "db" }], outbound_rules: [{ dst_tag: "db" }] }),
    profile({ id: "web", tags: ["db-user", "web"], inbound_rules: [{ protocol: "tcp", dst_ports: [80], "!src_tag": "web" }] }),
  ];
  const endpoints = [
    endpoint({ host: "hv1", workload: "w1", id: "a", name: "tap-a", profile_ids: ["db"], ipv4_nets: ["198.18.0.1"], ipv6_nets: ["2001:db8::1"] }),
    endpoint({ host: "hv1", workload: "w2", id: "b", name: "tap-b", profile_ids: ["app", "web"], ipv4_nets: ["198.18.0.2"] }),
    endpoint({ host: "hv2", workload: "w3", id: "c", name: "tap-c", profile_ids: ["web", "db"], ipv4_nets: ["198.18.0.3"], ipv6_nets: ["2001:db8::3"] }),
  ];
  const events: Ev[] = [...profiles.map(P), ...endpoints.map(E)];
  const expected = expectedStates(events, ["hv1", "hv2"]);

  it("the reference state is what the model says (sanity)", () => {
    // hv1 uses db (refs db-user), app (refs db), web (refs web): all three tag sets, both families
    expect(tagSets(expected.hv1!.sets)).toEqual(["pal4t-db", "pal4t-db-user", "pal4t-web", "pal6t-db", "pal6t-db-user", "pal6t-web"]);
    expect(expected.hv1!.sets["pal4t-db-user"]!.members).toEqual(["198.18.0.2", "198.18.0.3"]);
    expect(expected.hv1!.sets["pal6t-db-user"]!.members).toEqual(["2001:db8::3"]);
    expect(expected.hv1!.sets["pal4t-db"]!.members).toEqual(["198.18.0.1", "198.18.0.3"]);
    expect(expected.hv1!.sets["pal4t-web"]!.members).toEqual(["198.18.0.2", "198.18.0.3"]);
    // hv2 uses web and db: no pal*t-db set (only app references tag db)
    expect(tagSets(expected.hv2!.sets)).toEqual(["pal4t-db-user", "pal4t-web", "pal6t-db-user", "pal6t-web"]);
    expect(expected.hv1!.endpoints).toEqual({ "hv1/openstack/w1/a": "tap-a", "hv1/openstack/w2/b": "tap-b" });
  });

  it("all 720 permutations, flushing after every event, give identical states", () => {
    const perms = permutations(events);
    expect(perms).toHaveLength(720);
    for (const [i, p] of perms.entries()) checkRun(p, "each", expected, `perm ${i} (each)`);
  });

  it("all 720 permutations, one flush at the end, give identical states", () => {
    for (const [i, p] of permutations(events).entries()) checkRun(p, "end", expected, `perm ${i} (end)`);
  });

  it("permutations with a transient delete and re-add of every object", () => {
    const rnd = mulberry32(11);
    for (let i = 0; i < 200; i++) {
      const seq: Ev[] = [];
      for (const ev of shuffle(rnd, events)) {
        seq.push(ev);
        if (rnd() < 0.5) {
          seq.push(ev.t === "P" ? dP(ev.p.id) : ev.t === "E" ? dE(ev.e) : ev);
          seq.push(ev);
        }
      }
      checkRun(seq, rnd() < 0.5 ? "each" : "end", expected, `transient ${i}`);
    }
  });
});

describe("calc graph sequences: the larger model", () => {
  const expected = expectedStates(FINAL_EVENTS, ["hv1", "hv2", "hv3", "hv9"]);

  it("canonical, reversed and interleaved orders give identical states", () => {
    const profiles = FINAL_EVENTS.filter((e) => e.t === "P");
    const eps = FINAL_EVENTS.filter((e) => e.t === "E");
    const interleaved: Ev[] = [];
    for (let i = 0; i < Math.max(profiles.length, eps.length); i++) {
      if (eps[i]) interleaved.push(eps[i]!);
      if (profiles[i]) interleaved.push(profiles[i]!);
    }
    const orders: [string, Ev[]][] = [
      ["canonical", FINAL_EVENTS],
      ["reversed", [...FINAL_EVENTS].reverse()],
      ["endpoints first", [...eps, ...profiles]],
      ["interleaved", interleaved],
    ];
    for (const [what, evs] of orders) {
      checkRun(evs, "each", expected, `${what} (each)`);
      checkRun(evs, "end", expected, `${what} (end)`);
    }
  });

  it("random histories (seeded) with variants, transient deletes and re-adds, transient objects, random flush points", () => {
    for (let seed = 1; seed <= 250; seed++) {
      const rnd = mulberry32(seed);
      const history = randomHistory(rnd);
      const mode: FlushMode = seed % 3 === 0 ? "each" : seed % 3 === 1 ? "end" : { random: mulberry32(seed * 7919) };
      checkRun(history, mode, expected, `seed ${seed}`);
    }
  });

  it("the same history flushed after every event or once gives the same states", () => {
    for (let seed = 1000; seed < 1040; seed++) {
      const history = randomHistory(mulberry32(seed));
      const hosts = hostsOf(history);
      const a = statesOf(run(history, "each").sink, hosts);
      const b = statesOf(run(history, "end").sink, hosts);
      expect(a).toEqual(b);
    }
  });

  it("a transient-only host ends with just its fail-closed entry chains", () => {
    const [e9] = TMP_ENDPOINTS;
    const { sink } = run([P(TMP_PROFILE), ...FINAL_EVENTS, E(e9!), dE(e9!), dP("tmp")], "each");
    const st = sink.state("hv9").plain();
    expect(tagSets(st.sets)).toEqual([]);
    expect(st.endpoints).toEqual({});
    expect(st).toEqual(emptyHost());
    // Empty classification sets, and every way through the entry chains ends in DROP.
    expect(Object.values(st.sets).every((x) => x.members.length === 0)).toBe(true);
    for (const f of [4, 6]) for (const root of ["pal-from-wl-dispatch", "pal-to-wl-dispatch"]) expect(st.chains[`${f}:${root}`]!.at(-1)).toBe("-j DROP");
    expect(Object.keys(st.chains).filter((k) => /pal-(cf|ct)_/.test(k))).toEqual([]);
    expect(sink.violations()).toEqual([]);
  });

  it("deleting everything, in any order, leaves every host empty (no sets, no profile or endpoint chains)", () => {
    const rnd = mulberry32(77);
    const deletes: Ev[] = [...Object.keys(FINAL_PROFILES).map(dP), ...Object.values(FINAL_ENDPOINTS).map(dE)];
    for (let i = 0; i < 50; i++) {
      const sink = new RecordingSink();
      const g = new CalcGraph(sink);
      for (const ev of FINAL_EVENTS) {
        if (ev.t === "P") g.upsertProfile(ev.p);
        else if (ev.t === "E") g.upsertEndpoint(ev.e);
      }
      g.flush(1);
      let rev = 1;
      for (const ev of shuffle(rnd, deletes)) {
        if (ev.t === "dP") g.deleteProfile(ev.id);
        else if (ev.t === "dE") g.deleteEndpoint(ev.key);
        if (rnd() < 0.5) g.flush(++rev);
      }
      g.flush(++rev);
      expect(sink.violations()).toEqual([]);
      for (const h of ["hv1", "hv2", "hv3"]) {
        const st = sink.state(h).plain();
        expect(tagSets(st.sets)).toEqual([]);
        expect(st.endpoints).toEqual({});
        expect(st).toEqual(emptyHost());
        expect(st).toEqual(snapshotState(g, h).plain());
      }
    }
  });

  it("re-upserting an identical object emits nothing", () => {
    const sink = new RecordingSink();
    const g = new CalcGraph(sink);
    for (const ev of FINAL_EVENTS) (ev.t === "P" ? g.upsertProfile(ev.p) : ev.t === "E" && g.upsertEndpoint(ev.e));
    g.flush(1);
    const n = sink.calls.length;
    // structurally equal copies, not the same objects
    for (const p of Object.values(FINAL_PROFILES)) g.upsertProfile(structuredClone(p));
    for (const e of Object.values(FINAL_ENDPOINTS)) g.upsertEndpoint(structuredClone(e));
    g.deleteProfile("never-existed");
    g.deleteEndpoint("hv1/x/y/z");
    g.flush(2);
    expect(sink.calls.length).toBe(n);
  });
});
