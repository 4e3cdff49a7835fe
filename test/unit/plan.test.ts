// The pure half of the driver: desired vs. kernel -> minimal batches (services/driver/plan/plan.ts).
import { describe, expect, it } from "vitest";
import { chainKey, type ChainDef } from "../../services/calc/desired-state.js";
import { emptyFamilyState, parseIpsetSave, parseIptablesSave, type KernelState } from "../../services/driver/kernel/kernel-state.js";
import { hookRule, planApply, planCleanup, type PlanInput } from "../../services/driver/plan/plan.js";
import { hashComment, ruleHashes } from "../../services/driver/plan/rule-hash.js";
import type { DesiredSet } from "../../services/driver/sync/desired-state.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { createLogger } from "../../services/runtime/logger.js";
import { FakeKernel } from "../support/fake-kernel.js";
import { mulberry32, randInt } from "../support/prng.js";
import { emptyWorld, mutate, type World } from "../support/random-dataplane.js";

const chain = (name: string, rules: string[], family: 4 | 6 = 4): ChainDef => ({ table: "filter", family, name, rules });

function desired(chains: ChainDef[], sets: Record<string, DesiredSet>, removeUnwanted = true, families: (4 | 6)[] = [4, 6]): PlanInput {
  return {
    chains: new Map(chains.map((c) => [chainKey(c.family, c.name), c])),
    sets: new Map(Object.entries(sets)),
    families,
    removeUnwanted,
  };
}

function emptyKernel(): KernelState {
  return { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
}

/** A kernel that holds exactly what `d` asks for, hooks in place. */
function kernelMatching(d: PlanInput): KernelState {
  const k = emptyKernel();
  for (const c of d.chains.values()) k.families[c.family].chains.set(c.name, { hashes: ruleHashes(c.name, c.rules) });
  for (const f of [4, 6] as const) {
    for (const b of ["FORWARD", "INPUT"]) {
      k.families[f].hookPositions.set(b, [1]);
      k.families[f].firstRuleHash.set(b, hookRule(b).hash);
    }
  }
  for (const [n, s] of d.sets) k.sets.set(n, { family: s.family, type: "hash:net", members: new Set(s.members) });
  return k;
}

// A tiny model of iptables-restore --noflush, enough to check that applying a
// plan gives a kernel the next plan finds in order.
type Table = Map<string, string[]>;
function restore(table: Table, text: string): void {
  const lines = text.split("\n");
  expect(lines[0]).toBe("*filter");
  expect(lines.at(-2)).toBe("COMMIT");
  for (const l of lines.slice(1, -2)) {
    let m: RegExpExecArray | null;
    if ((m = /^:(\S+) - \[0:0\]$/.exec(l))) table.set(m[1]!, []);
    else if ((m = /^-A (\S+) (.*)$/.exec(l))) {
      const c = table.get(m[1]!);
      if (!c) throw new Error(`append to missing chain ${m[1]}`);
      c.push(m[2]!);
    } else if ((m = /^-I (\S+) (\d+) (.*)$/.exec(l))) table.get(m[1]!)!.splice(Number(m[2]) - 1, 0, m[3]!);
    else if ((m = /^-D (\S+) (\d+)$/.exec(l))) {
      const c = table.get(m[1]!)!;
      if (Number(m[2]) > c.length) throw new Error(`delete of missing rule ${l}`);
      c.splice(Number(m[2]) - 1, 1);
    } else if ((m = /^-X (\S+)$/.exec(l))) {
      if (table.get(m[1]!)!.length) throw new Error(`-X of non-empty chain ${m[1]}`);
      for (const [n, rules] of table) if (rules.some((r) => r.endsWith(`-j ${m![1]}`) || r.endsWith(`-g ${m![1]}`))) throw new Error(`-X of ${m[1]} still referenced by ${n}`);
      table.delete(m[1]!);
    } else throw new Error(`unexpected restore line ${l}`);
  }
}
function save(table: Table): string {
  const out = ["*filter"];
  for (const n of table.keys()) out.push(`:${n} ${["INPUT", "FORWARD", "OUTPUT"].includes(n) ? "ACCEPT" : "-"} [0:0]`);
  for (const [n, rules] of table) for (const r of rules) out.push(`-A ${n} ${r.replace(/--comment (pal:\S+)/, '--comment "$1"')}`);
  out.push("COMMIT", "");
  return out.join("\n");
}
function builtins(): Table {
  return new Map([["INPUT", ["-i lo -j ACCEPT"]], ["FORWARD", ["-j DOCKER-USER"]], ["OUTPUT", []], ["DOCKER-USER", ["-j RETURN"]]]);
}

const D1 = desired(
  [
    chain("pal-FORWARD", ["-i tap+ -j pal-from-wl-dispatch", "-i tap+ -j ACCEPT"]),
    chain("pal-INPUT", ["-i tap+ -j DROP"]),
    chain("pal-from-wl-dispatch", ["-j DROP"]),
    chain("pal-FORWARD", ["-j DROP"], 6),
    chain("pal-INPUT", ["-j DROP"], 6),
  ],
  { "pal4t-a": { family: 4, members: new Set(["198.18.0.1", "198.18.0.2"]) }, "pal6t-a": { family: 6, members: new Set(["2001:db8::1"]) } },
);

describe("planApply: from an empty kernel", () => {
  const plan = planApply(D1, emptyKernel());

  it("creates the sets with their members", () => {
    expect(plan.ipsetBefore).toEqual([
      "create pal4t-a hash:net family inet maxelem 1048576 -exist",
      "create pal6t-a hash:net family inet6 maxelem 1048576 -exist",
      "add pal4t-a 198.18.0.1 -exist",
      "add pal4t-a 198.18.0.2 -exist",
      "add pal6t-a 2001:db8::1 -exist",
    ]);
    expect(plan.ipsetAfter).toEqual([]);
  });

  it("declares and fills every chain with hash comments, then hooks at position 1", () => {
    const [f0, f1] = ruleHashes("pal-FORWARD", ["-i tap+ -j pal-from-wl-dispatch", "-i tap+ -j ACCEPT"]);
    const [i0] = ruleHashes("pal-INPUT", ["-i tap+ -j DROP"]);
    const [d0] = ruleHashes("pal-from-wl-dispatch", ["-j DROP"]);
    expect(plan.restore[4]).toBe([
      "*filter",
      ":pal-FORWARD - [0:0]",
      ":pal-INPUT - [0:0]",
      ":pal-from-wl-dispatch - [0:0]",
      `-A pal-FORWARD ${hashComment(f0!)} -i tap+ -j pal-from-wl-dispatch`,
      `-A pal-FORWARD ${hashComment(f1!)} -i tap+ -j ACCEPT`,
      `-A pal-INPUT ${hashComment(i0!)} -i tap+ -j DROP`,
      `-A pal-from-wl-dispatch ${hashComment(d0!)} -j DROP`,
      `-I FORWARD 1 ${hashComment(hookRule("FORWARD").hash)} -j pal-FORWARD`,
      `-I INPUT 1 ${hashComment(hookRule("INPUT").hash)} -j pal-INPUT`,
      "COMMIT",
      "",
    ].join("\n"));
    expect(plan.restore[6]).toContain(":pal-FORWARD - [0:0]");
    expect(plan.restore[6]).not.toContain("pal-from-wl-dispatch");
    expect(plan.chainsWritten).toBe(5);
    expect(plan.chainsRemoved).toBe(0);
  });

  it("applying the plan and reading the kernel back gives a kernel the next plan leaves alone", () => {
    const tables = { 4: builtins(), 6: builtins() };
    for (const f of [4, 6] as const) restore(tables[f], plan.restore[f]!);
    expect(tables[4].get("FORWARD")![0]).toMatch(/-j pal-FORWARD$/);
    expect(tables[4].get("FORWARD")![1]).toBe("-j DOCKER-USER");
    const kernel: KernelState = {
      families: { 4: parseIptablesSave(save(tables[4])), 6: parseIptablesSave(save(tables[6])) },
      sets: parseIpsetSave(
        [...D1.sets].flatMap(([n, s]) => [`create ${n} hash:net family ${s.family === 4 ? "inet" : "inet6"} hashsize 1024 maxelem 1048576`, ...[...s.members].map((m) => `add ${n} ${m}`)]).join("\n"),
      ),
    };
    const again = planApply(D1, kernel);
    expect(again).toEqual({ restoreFirst: { 4: undefined, 6: undefined }, ipsetBefore: [], restore: { 4: undefined, 6: undefined }, ipsetAfter: [], chainsWritten: 0, chainsRemoved: 0 });
  });
});

describe("planApply: against a kernel that already holds things", () => {
  it("writes nothing when the kernel already matches", () => {
    expect(planApply(D1, kernelMatching(D1))).toEqual({
      restoreFirst: { 4: undefined, 6: undefined }, ipsetBefore: [], restore: { 4: undefined, 6: undefined }, ipsetAfter: [], chainsWritten: 0, chainsRemoved: 0,
    });
  });

  it("rewrites only the chains whose hashes differ", () => {
    const k = kernelMatching(D1);
    // someone appended a rule to pal-INPUT (v4) and flushed pal-INPUT (v6)
    k.families[4].chains.get("pal-INPUT")!.hashes.push("");
    k.families[6].chains.get("pal-INPUT")!.hashes = [];
    const plan = planApply(D1, k);
    const [i0] = ruleHashes("pal-INPUT", ["-i tap+ -j DROP"]);
    expect(plan.restore[4]).toBe(["*filter", ":pal-INPUT - [0:0]", `-A pal-INPUT ${hashComment(i0!)} -i tap+ -j DROP`, "COMMIT", ""].join("\n"));
    expect(plan.restore[6]).toBe(["*filter", ":pal-INPUT - [0:0]", `-A pal-INPUT ${hashComment(ruleHashes("pal-INPUT", ["-j DROP"])[0]!)} -j DROP`, "COMMIT", ""].join("\n"));
    expect(plan.chainsWritten).toBe(2);
    expect(plan.ipsetBefore).toEqual([]);
  });

  it("a changed rule, a reordered chain or a foreign rule in our chain each cause a rewrite of that chain only", () => {
    const changed = desired([...D1.chains.values()].map((c) => (c.name === "pal-from-wl-dispatch" ? chain(c.name, ["-i tap1 -g pal-fw-tap1", "-j DROP"]) : c)), Object.fromEntries(D1.sets));
    const plan = planApply(changed, kernelMatching(D1));
    expect(plan.chainsWritten).toBe(1);
    expect(plan.restore[4]).toContain(":pal-from-wl-dispatch - [0:0]");
    expect(plan.restore[4]).not.toContain(":pal-FORWARD");
    expect(plan.restore[6]).toBeUndefined();

    const k = kernelMatching(D1);
    k.families[4].chains.get("pal-FORWARD")!.hashes.reverse();
    expect(planApply(D1, k).restore[4]).toMatch(/^\*filter\n:pal-FORWARD - \[0:0\]\n-A pal-FORWARD /);
  });

  it("produces member add/del deltas, never a flush or re-create of an existing set", () => {
    const k = kernelMatching(D1);
    k.sets.get("pal4t-a")!.members = new Set(["198.18.0.2", "198.18.0.9"]);
    k.sets.get("pal6t-a")!.members = new Set(["2001:db8::1", "2001:db8::2"]);
    const plan = planApply(D1, k);
    expect(plan.ipsetBefore).toEqual([
      "del pal4t-a 198.18.0.9 -exist",
      "del pal6t-a 2001:db8::2 -exist",
      "add pal4t-a 198.18.0.1 -exist",
    ]);
    expect(plan.ipsetBefore.some((l) => /^(create|flush|destroy|swap) /.test(l))).toBe(false);
    expect(plan.restore).toEqual({ 4: undefined, 6: undefined });
  });

  // The kernel refuses `ipset swap` unless both sets have the same family and
  // the same type features (ip_set_swap returns IPSET_ERR_TYPE_MISMATCH), and
  // refuses to rename or destroy a set that iptables references. A leftover
  // set of the wrong type or family is therefore replaced in three steps:
  // stage 0 empties every chain referencing it to a single DROP (fail
  // closed), then the set is destroyed and re-created, then the normal
  // restore rewrites those chains.
  it("a set of the wrong family is re-created after its referencing chains are emptied to DROP", () => {
    const k = kernelMatching(D1);
    k.sets.set("pal6t-a", { family: 4, type: "hash:net", members: new Set() });
    k.families[6].setRefs.set("pal6t-a", new Set(["pal-pi-x"]));
    const plan = planApply(D1, k);
    expect(plan.ipsetBefore.some((l) => l.startsWith("swap "))).toBe(false);
    const i = plan.ipsetBefore.indexOf("destroy pal6t-a");
    expect(i).toBeGreaterThanOrEqual(0);
    expect(plan.ipsetBefore[i + 1]).toMatch(/^create pal6t-a hash:net family inet6 /);
    expect(plan.ipsetBefore).toContain("add pal6t-a 2001:db8::1 -exist");
    expect(plan.restoreFirst[6]).toMatch(/^\*filter\n:pal-pi-x - \[0:0\]\n-A pal-pi-x -m comment --comment pal:[0-9a-f]{16} -j DROP\nCOMMIT\n$/);
    expect(plan.restoreFirst[4]).toBeUndefined();
  });

  it("a set of the wrong type is re-created and the chains that used it are rewritten even if their hashes matched", () => {
    const user = chain("pal-pi-db", ["-p tcp -m set --match-set pal4t-a src -j DROP"]);
    const d = desired([...D1.chains.values(), user], Object.fromEntries(D1.sets));
    const k = kernelMatching(d);
    k.sets.set("pal4t-a", { family: 4, type: "hash:ip", members: new Set(["198.18.0.1"]) });
    // What parseIptablesSave records for that chain.
    const parsed = parseIptablesSave(`*filter\n:pal-pi-db - [0:0]\n-A pal-pi-db -p tcp -m comment --comment "pal:${ruleHashes("pal-pi-db", user.rules)[0]}" -m set --match-set pal4t-a src -j DROP\nCOMMIT\n`);
    expect([...parsed.setRefs.get("pal4t-a")!]).toEqual(["pal-pi-db"]);
    k.families[4].setRefs = parsed.setRefs;
    const plan = planApply(d, k);
    expect(plan.ipsetBefore).toContain("destroy pal4t-a");
    expect(plan.ipsetBefore).toContain("add pal4t-a 198.18.0.2 -exist");
    expect(plan.restoreFirst[4]).toContain(":pal-pi-db - [0:0]");
    expect(plan.restore[4]).toContain(":pal-pi-db - [0:0]");
    expect(plan.restore[4]).toContain("--match-set pal4t-a src -j DROP");
  });

  it("a matching set is never destroyed or re-created", () => {
    const k = kernelMatching(D1);
    const plan = planApply(D1, k);
    expect(plan.ipsetBefore.filter((l) => /^(destroy|create) /.test(l))).toEqual([]);
    expect(plan.restoreFirst).toEqual({ 4: undefined, 6: undefined });
  });
});

describe("planApply: hooks", () => {
  const fwd = hookRule("FORWARD");

  it.each<[string, number[], string, string[]]>([
    ["missing", [], "", [`-I FORWARD 1 ${fwd.spec}`]],
    ["at position 1 with our hash", [1], fwd.hash, []],
    ["at position 1 without our comment", [1], "", ["-D FORWARD 1", `-I FORWARD 1 ${fwd.spec}`]],
    ["not at the top", [3], "", ["-D FORWARD 3", `-I FORWARD 1 ${fwd.spec}`]],
    ["duplicated (1 and 3)", [1, 3], fwd.hash, ["-D FORWARD 3", "-D FORWARD 1", `-I FORWARD 1 ${fwd.spec}`]],
    ["strays at 2, 5, 4", [2, 5, 4], "", ["-D FORWARD 5", "-D FORWARD 4", "-D FORWARD 2", `-I FORWARD 1 ${fwd.spec}`]],
  ])("FORWARD hook %s", (_what, positions, first, expected) => {
    const k = kernelMatching(D1);
    k.families[4].hookPositions.set("FORWARD", positions);
    k.families[4].firstRuleHash.set("FORWARD", first);
    const plan = planApply(D1, k);
    if (expected.length === 0) {
      expect(plan.restore[4]).toBeUndefined();
    } else {
      expect(plan.restore[4]).toBe(["*filter", ...expected, "COMMIT", ""].join("\n"));
    }
    expect(plan.restore[6]).toBeUndefined();
  });

  it("the hook spec carries its hash comment and jumps to our base chain", () => {
    expect(fwd.spec).toBe(`${hashComment(fwd.hash)} -j pal-FORWARD`);
    expect(hookRule("INPUT").spec).toMatch(/ -j pal-INPUT$/);
    expect(fwd.hash).toBe(ruleHashes("FORWARD", ["-j pal-FORWARD"])[0]);
  });
});

describe("planApply: unwanted chains and sets", () => {
  function withExtras(): KernelState {
    const k = kernelMatching(D1);
    k.families[4].chains.set("pal-old", { hashes: ["x"] });
    k.families[6].chains.set("pal-from-wl-dispatch", { hashes: [] }); // wanted in v4 only
    k.sets.set("pal4t-old", { family: 4, type: "hash:net", members: new Set(["198.18.0.5"]) });
    return k;
  }

  it("removeUnwanted: flushes then deletes unwanted chains (per family), destroys unwanted sets after", () => {
    const plan = planApply(D1, withExtras());
    expect(plan.restore[4]).toBe(["*filter", ":pal-old - [0:0]", "-X pal-old", "COMMIT", ""].join("\n"));
    expect(plan.restore[6]).toBe(["*filter", ":pal-from-wl-dispatch - [0:0]", "-X pal-from-wl-dispatch", "COMMIT", ""].join("\n"));
    expect(plan.chainsRemoved).toBe(2);
    expect(plan.ipsetBefore).toEqual([]);
    expect(plan.ipsetAfter).toEqual(["destroy pal4t-old"]);
  });

  it("a position set on its way out is emptied in the ipset stage, before the chains stop looking it up; a tag set is not (DESIGN §6.5, mid-apply)", () => {
    const k = withExtras();
    for (const name of ["pal4ip0_aaaaaaaaaaaaaaaa", "pal4ix1", "pal4ipn0-a"]) k.sets.set(name, { family: 4, type: "hash:net,iface", members: new Set(["198.18.0.5,tap1"]) });
    const plan = planApply(D1, k);
    expect(plan.ipsetBefore.sort()).toEqual(["flush pal4ip0_aaaaaaaaaaaaaaaa", "flush pal4ipn0-a", "flush pal4ix1"]);
    expect(plan.ipsetAfter.sort()).toEqual(["destroy pal4ip0_aaaaaaaaaaaaaaaa", "destroy pal4ipn0-a", "destroy pal4ix1", "destroy pal4t-old"]);
  });

  it("without removeUnwanted (before the first in-sync) nothing is removed", () => {
    const plan = planApply({ ...D1, removeUnwanted: false }, withExtras());
    expect(plan).toEqual({ restoreFirst: { 4: undefined, 6: undefined }, ipsetBefore: [], restore: { 4: undefined, 6: undefined }, ipsetAfter: [], chainsWritten: 0, chainsRemoved: 0 });
  });

  it("chains are declared before rules, rules before hooks, removals last", () => {
    const k = withExtras();
    k.families[4].chains.delete("pal-INPUT");
    k.families[4].hookPositions.set("INPUT", [2]);
    const lines = planApply(D1, k).restore[4]!.split("\n");
    const first = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const last = (re: RegExp) => lines.length - 1 - [...lines].reverse().findIndex((l) => re.test(l));
    expect(last(/^:/)).toBeLessThan(first(/^-A /));
    expect(last(/^-A /)).toBeLessThan(first(/^-[DI] /));
    expect(last(/^-[DI] /)).toBeLessThan(first(/^-X /));
  });

  it("only the families asked for are planned", () => {
    const plan = planApply({ ...D1, families: [4] }, emptyKernel());
    expect(plan.restore[4]).toBeDefined();
    expect(plan.restore[6]).toBeUndefined();
    expect(plan.chainsWritten).toBe(3);
  });
});

describe("planCleanup", () => {
  it("deletes hooks (descending), flushes then deletes our chains, destroys our sets", () => {
    const k = emptyKernel();
    k.families[4].hookPositions.set("FORWARD", [1, 4]);
    k.families[4].hookPositions.set("INPUT", [2]);
    k.families[4].chains.set("pal-a", { hashes: ["h"] });
    k.families[4].chains.set("pal-b", { hashes: [] });
    k.families[6].chains.set("pal-c", { hashes: [] });
    k.sets.set("pal4t-x", { family: 4, type: "hash:net", members: new Set(["198.18.0.1"]) });
    k.sets.set("pal6t-x", { family: 6, type: "hash:net", members: new Set() });
    const plan = planCleanup(k, [4, 6]);
    expect(plan.restore[4]).toBe(["*filter", "-D FORWARD 4", "-D FORWARD 1", "-D INPUT 2", ":pal-a - [0:0]", ":pal-b - [0:0]", "-X pal-a", "-X pal-b", "COMMIT", ""].join("\n"));
    expect(plan.restore[6]).toBe(["*filter", ":pal-c - [0:0]", "-X pal-c", "COMMIT", ""].join("\n"));
    expect(plan.ipsetBefore).toEqual([]);
    expect(plan.ipsetAfter).toEqual(["destroy pal4t-x", "destroy pal6t-x"]);
    expect(plan.chainsRemoved).toBe(3);
    expect(plan.chainsWritten).toBe(0);
  });

  it("cleaning a clean kernel does nothing", () => {
    expect(planCleanup(emptyKernel(), [4, 6])).toEqual({ restoreFirst: { 4: undefined, 6: undefined }, ipsetBefore: [], restore: { 4: undefined, 6: undefined }, ipsetAfter: [], chainsWritten: 0, chainsRemoved: 0 });
  });

  it("cleanup of a kernel built by a plan leaves only the foreign rules", () => {
    const table = builtins();
    restore(table, planApply(D1, emptyKernel()).restore[4]!);
    const k: KernelState = { families: { 4: parseIptablesSave(save(table)), 6: emptyFamilyState() }, sets: new Map() };
    restore(table, planCleanup(k, [4]).restore[4]!);
    expect(table).toEqual(builtins());
  });
});

describe("set types by name (DESIGN §6.2): MAC sets and their list", () => {
  it("a MAC set is created with its range, the list set with its size, every set before any member, deletions before additions", () => {
    const k = emptyKernel();
    k.sets = parseIpsetSave([
      "create pal4mac list:set size 65536",
      "create pal4m-10-1 bitmap:ip,mac range 10.1.0.0-10.1.255.255",
      "add pal4m-10-1 10.1.0.5,02:00:00:00:00:01",
      "add pal4mac pal4m-10-1",
    ].join("\n"));
    const d = desired([], {
      // The list first: its new member set must still be created before it is added.
      pal4mac: { family: 4, members: new Set(["pal4m-10-1", "pal4m-10-2"]) },
      // The address's MAC changes: a bitmap:ip,mac member is its address, so the del must come first.
      "pal4m-10-1": { family: 4, members: new Set(["10.1.0.5,02:00:00:00:00:02"]) },
      "pal4m-10-2": { family: 4, members: new Set(["10.2.0.9,02:00:00:00:00:03"]) },
    }, true, [4]);
    expect(planApply(d, k).ipsetBefore).toEqual([
      "create pal4m-10-2 bitmap:ip,mac range 10.2.0.0/16 -exist",
      "del pal4m-10-1 10.1.0.5,02:00:00:00:00:01 -exist",
      "add pal4mac pal4m-10-2 -exist",
      "add pal4m-10-1 10.1.0.5,02:00:00:00:00:02 -exist",
      "add pal4m-10-2 10.2.0.9,02:00:00:00:00:03 -exist",
    ]);
  });
});

describe("destroying a list:set and its members", () => {
  // The kernel refuses to destroy a set a list:set still holds: the list goes first, whatever order ipset save gave.
  const k = () => {
    const kernel = emptyKernel();
    kernel.sets = parseIpsetSave([
      "create pal4m-10-1 bitmap:ip,mac range 10.1.0.0-10.1.255.255",
      "create pal4mac list:set size 65536",
      "add pal4mac pal4m-10-1",
    ].join("\n"));
    return kernel;
  };
  it("--cleanup destroys the list before its members", () => {
    expect(planCleanup(k(), [4]).ipsetAfter).toEqual(["destroy pal4mac", "destroy pal4m-10-1"]);
  });
  it("sets no longer wanted (e.g. a host's MAC sets and their list) go list first", () => {
    expect(planApply(desired([], {}, true, [4]), k()).ipsetAfter).toEqual(["destroy pal4mac", "destroy pal4m-10-1"]);
  });
});

describe("a MAC set to re-create while a list:set holds it (a leftover or a tampered kernel)", () => {
  const logger = createLogger({ name: "test", level: "silent" });
  const base = driverBaseChains(["tap"], [4]);
  const want = () => ({
    chains: new Map([...base, ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => [chainKey(4, n), chain(n, ["-m set --match-set pal4mac src,src -j RETURN", "-j DROP"])] as const)]),
    sets: new Map<string, DesiredSet>([
      ["pal4mac", { family: 4, members: new Set(["pal4m-198-18"]) }],
      ["pal4m-198-18", { family: 4, members: new Set(["198.18.0.5,02:00:00:00:00:01"]) }],
    ]),
    families: [4 as const],
    removeUnwanted: true,
  });

  // The kernel refuses to destroy a set a list holds, and members outside a bitmap's range:
  // the set must leave the list, be re-created, and be listed again.
  for (const [what, header] of [["of another type", "hash:net family inet maxelem 1048576"], ["over another range", "bitmap:ip,mac range 198.19.0.0/16"]] as const) {
    it(`${what}: taken out of the list, re-created, listed again`, async () => {
      const k = new FakeKernel();
      await k.run("ipset", ["restore"], `create pal4m-198-18 ${header}\ncreate pal4mac list:set size 65536\nadd pal4mac pal4m-198-18\n`);
      const d = want();
      const dp = createDataplane({ runner: k, backend: "nft", families: [4], logger });
      await dp.apply(d);
      expect(k.refusals.filter((r) => r !== undefined)).toEqual([]);
      expect(k.sets.get("pal4m-198-18")!.header).toMatch(/^bitmap:ip,mac range 198\.18\.0\.0/);
      expect([...k.sets.get("pal4m-198-18")!.members]).toEqual(["198.18.0.5,02:00:00:00:00:01"]);
      expect([...k.sets.get("pal4mac")!.members]).toEqual(["pal4m-198-18"]);
      expect(await dp.detectDrift()).toBe(false);
    });
  }
});

describe("planApply between any two states a driver may meet (seeded: restart, reconnect, read-back)", () => {
  // From whatever a previous driver left (tag, interface, MAC and list sets,
  // chains matching them and jumping to each other, both families) to any
  // other such state: the full plan is one the kernel accepts (the fake
  // kernel refuses what the kernel refuses) and lands exactly on it.
  const FAMILIES = [4, 6] as const;
  const base = driverBaseChains(["tap"], FAMILIES);
  const logger = createLogger({ name: "test", level: "silent" });
  const walk = (rnd: () => number, w: World, steps: number) => { for (let i = 0; i < steps; i++) w = mutate(rnd, w, FAMILIES); return w; };
  const input = (w: World) => buildPlanInput({ base, families: FAMILIES, desired: w });

  for (let seed = 1; seed <= 40; seed++) {
    it(`seed ${seed}`, async () => {
      const rnd = mulberry32(seed);
      const k = new FakeKernel();
      const before = walk(rnd, emptyWorld(FAMILIES), 1 + randInt(rnd, 6));
      await createDataplane({ runner: k, backend: "nft", families: [...FAMILIES], logger }).apply(input(before));
      // A new driver: reads the kernel, keeps everything until its first in-sync, then plans in full.
      const dp = createDataplane({ runner: k, backend: "nft", families: [...FAMILIES], logger });
      const start = await dp.readKernel();
      await dp.apply(buildPlanInput({ base, families: FAMILIES, startKernel: start }));
      const after = walk(rnd, before, 1 + randInt(rnd, 6));
      await dp.apply(input(after));
      expect(k.refusals.filter((r) => r !== undefined)).toEqual([]);
      for (const f of FAMILIES) {
        const want: Record<string, readonly string[]> = {};
        for (const c of input(after).chains.values()) if (c.family === f) want[c.name] = c.rules;
        const have: Record<string, string[]> = {};
        for (const [n, rules] of k.tables[f]) if (n.startsWith("pal-")) have[n] = rules.map((r) => r.replace(/^-m comment --comment pal:[0-9a-f]{16} /, ""));
        expect(have).toEqual(want);
      }
      const sets = (m: Iterable<[string, { members: Set<string> }]>) => Object.fromEntries([...m].map(([n, s]) => [n, [...s.members].sort()]));
      expect(sets(k.sets)).toEqual(sets(after.sets));
      expect(await dp.detectDrift()).toBe(false);
    });
  }
});
