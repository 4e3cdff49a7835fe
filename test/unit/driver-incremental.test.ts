// Applies proportional to the change (DESIGN §6.7): the driver plans from
// what changed since its last successful apply; a full desired-vs-kernel
// diff runs only at start, after a failed apply and on drift checks
// (DESIGN §6.9). Against an in-memory kernel (support/fake-kernel.ts),
// counting the commands it received; the driver itself against an
// in-process fake controller.
import { afterEach, describe, expect, it } from "vitest";
import { type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane, type Dataplane } from "../../services/driver/apply/dataplane.js";
import { DesiredState, type DesiredSet } from "../../services/driver/sync/desired-state.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";
import { mulberry32 } from "../support/prng.js";
import { emptyWorld, mutate, tamper, updatesBetween } from "../support/random-dataplane.js";

const logger = createLogger({ name: "test", level: "silent" });
const chain = (name: string, rules: string[]): ChainDef => ({ table: "filter", family: 4, name, rules });
const ENTRY = ["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"];
const BASE = driverBaseChains(["tap"], [4]);
const addr = (i: number) => `198.18.${i >> 8}.${i & 255}`;

/** A snapshot: the entry chains, `chains` policy chains and `sets` sets of `members` members each. */
function snapshot(chains: number, sets: number, members: number): HostUpdate[] {
  return [
    ...ENTRY.map((n) => ({ type: "chain-update" as const, chain: chain(n, ["-j DROP"]) })),
    ...Array.from({ length: chains }, (_, i) => ({ type: "chain-update" as const, chain: chain(`pal-pi-c${i}`, [`-p tcp --dport ${1000 + i} -j ACCEPT`]) })),
    ...Array.from({ length: sets }, (_, s) => ({ type: "ipset-update" as const, name: `pal4t-s${s}`, family: 4 as const, members: Array.from({ length: members }, (_, m) => addr(s * members + m + 1)) })),
  ];
}

/** A dataplane fed the way the driver feeds it: a DesiredState, its plan-input view, its changes. */
async function programmed(k: CommandRunner, updates: HostUpdate[]): Promise<{ dp: Dataplane; d: DesiredState; apply(): Promise<unknown> }> {
  const dp = createDataplane({ runner: k, backend: "nft", families: [4], logger });
  const d = new DesiredState();
  d.apply(updates);
  const apply = () => dp.applyFrom(() => ({ input: buildPlanInput({ base: BASE, families: [4], desired: d }), changes: d.takeChanges() }));
  await apply();
  return { dp, d, apply };
}

const strip = (r: string) => r.replace(/^-m comment --comment pal:[0-9a-f]{16} /, "");

/** The fake kernel holds exactly the base chains, `d`'s chains and sets, and the hooks. */
function expectKernelEquals(k: FakeKernel, d: DesiredState): void {
  const want = new Map<string, readonly string[]>();
  for (const c of [...BASE.values(), ...d.chains.values()]) want.set(c.name, c.rules);
  const have = new Map<string, string[]>();
  for (const [n, rules] of k.tables[4]) if (n.startsWith("pal-")) have.set(n, rules.map(strip));
  expect(Object.fromEntries(have)).toEqual(Object.fromEntries(want));
  expect(k.chain(4, "FORWARD")!.map(strip)).toEqual(["-j pal-FORWARD"]);
  expect(k.chain(4, "INPUT")!.map(strip)).toEqual(["-j pal-INPUT"]);
  const sets = (m: Iterable<[string, { members: Set<string> }]>) => Object.fromEntries([...m].map(([n, s]) => [n, [...s.members].sort()]));
  expect(sets(k.sets)).toEqual(sets(d.sets));
}

describe("dataplane: an apply planned from the change writes only the change", () => {
  it("one member added: one ipset restore with one add line; no read-back, no iptables-restore", async () => {
    const k = new FakeKernel();
    const { d, apply } = await programmed(k, snapshot(20, 10, 50));
    const from = k.log.length;
    d.apply([{ type: "ipset-delta", name: "pal4t-s3", family: 4, added: ["198.18.100.1"], removed: [] }]);
    await apply();
    expect(k.log.slice(from)).toEqual(["ipset restore"]);
    expect(k.inputs.slice(from)).toEqual(["add pal4t-s3 198.18.100.1 -exist\n"]);
    expectKernelEquals(k, d);
  });

  it("one member removed, one added back before the apply: only the net change is written", async () => {
    const k = new FakeKernel();
    const { d, apply } = await programmed(k, snapshot(5, 3, 10));
    const from = k.log.length;
    d.apply([{ type: "ipset-delta", name: "pal4t-s1", family: 4, added: ["198.18.100.1"], removed: [addr(11)] }]);
    d.apply([{ type: "ipset-delta", name: "pal4t-s1", family: 4, added: [addr(11)], removed: [] }]);
    await apply();
    expect(k.inputs.slice(from)).toEqual(["add pal4t-s1 198.18.100.1 -exist\n"]);
    expectKernelEquals(k, d);
  });

  it("one chain changed: one iptables-restore holding only that chain; no ipset restore", async () => {
    const k = new FakeKernel();
    const { d, apply } = await programmed(k, snapshot(20, 10, 50));
    const from = k.log.length;
    d.apply([{ type: "chain-update", chain: chain("pal-pi-c7", ["-p tcp --dport 7777 -j ACCEPT", "-j DROP"]) }]);
    await apply();
    expect(k.log.slice(from)).toEqual(["iptables-nft-restore --noflush --wait 10"]);
    const text = k.inputs[from]!;
    expect(text.split("\n").filter((l) => l.startsWith(":"))).toEqual([":pal-pi-c7 - [0:0]"]);
    expect(text.split("\n").filter((l) => l.startsWith("-A")).length).toBe(2);
    expectKernelEquals(k, d);
  });

  it("a chain and a set removed: the chain goes before the set, in two writes; nothing else is touched", async () => {
    const k = new FakeKernel();
    const { d, apply } = await programmed(k, snapshot(5, 3, 10));
    const from = k.log.length;
    d.apply([{ type: "chain-remove", table: "filter", family: 4, name: "pal-pi-c2" }, { type: "ipset-remove", name: "pal4t-s2", family: 4 }]);
    await apply();
    expect(k.log.slice(from)).toEqual(["iptables-nft-restore --noflush --wait 10", "ipset restore"]);
    expect(k.inputs.slice(from)).toEqual(["*filter\n:pal-pi-c2 - [0:0]\n-X pal-pi-c2\nCOMMIT\n", "destroy pal4t-s2\n"]);
    expectKernelEquals(k, d);
  });

  it("a position set removed with the line that looks it up: emptied in the first ipset stage, destroyed in the last (DESIGN §6.5, mid-apply)", async () => {
    const k = new FakeKernel();
    const ps = "pal4ip0_aaaaaaaaaaaaaaaa";
    const { d, apply } = await programmed(k, [
      ...snapshot(1, 1, 1),
      { type: "ipset-update", name: ps, family: 4, members: ["198.18.0.9,tap1"] },
      { type: "chain-update", chain: chain("pal-cf0", [`-m set --match-set ${ps} src,src -g pal-pi-c0`, "-j DROP"]) },
    ]);
    const from = k.log.length;
    d.apply([{ type: "chain-update", chain: chain("pal-cf0", ["-j DROP"]) }, { type: "ipset-remove", name: ps, family: 4 }]);
    await apply();
    expect(k.log.slice(from)).toEqual(["ipset restore", "iptables-nft-restore --noflush --wait 10", "ipset restore"]);
    expect(k.inputs[from]).toBe(`flush ${ps}\n`);
    expect(k.inputs[from + 2]).toBe(`destroy ${ps}\n`);
    expectKernelEquals(k, d);
  });

  it("a set re-created in another family: the chains referencing it are emptied first, then refilled", async () => {
    const k = new FakeKernel();
    const { dp, d, apply } = await programmed(k, [...snapshot(3, 2, 4), { type: "chain-update", chain: chain("pal-pi-m", ["-m set --match-set pal4t-s1 src -j ACCEPT"]) }]);
    const from = k.log.length;
    // The chain stops referencing it in the same change (an IPv4 rule cannot match an IPv6 set), but
    // the kernel's copy still does until stage 2: without stage 0 the destroy would be refused.
    d.apply([{ type: "ipset-update", name: "pal4t-s1", family: 6, members: ["2001:db8::1"] }, { type: "chain-update", chain: chain("pal-pi-m", ["-j DROP"]) }]);
    await apply();
    expect(k.log.slice(from)).toEqual(["iptables-nft-restore --noflush --wait 10", "ipset restore", "iptables-nft-restore --noflush --wait 10"]);
    expect(k.inputs[from]).toContain(":pal-pi-m - [0:0]");
    expect(k.inputs[from + 1]).toBe("destroy pal4t-s1\ncreate pal4t-s1 hash:net family inet6 maxelem 1048576\nadd pal4t-s1 2001:db8::1 -exist\n");
    expectKernelEquals(k, d);
    expect(await dp.detectDrift()).toBe(false);
  });

  it("after a failed apply, the next one reads the kernel back, diffs in full and converges", async () => {
    const k = new FakeKernel();
    let fail = false;
    const runner: CommandRunner = { run: (cmd, args, input) => (fail && cmd === "iptables-nft-restore" ? Promise.reject(new Error("injected")) : k.run(cmd, args, input)) };
    const { dp, d, apply } = await programmed(runner, snapshot(5, 3, 10));
    fail = true;
    // The set stage lands, the chain stage fails: a half-written kernel.
    d.apply([{ type: "chain-update", chain: chain("pal-pi-c1", ["-j DROP"]) }, { type: "ipset-delta", name: "pal4t-s0", family: 4, added: ["198.18.100.1"], removed: [addr(1)] }]);
    await expect(apply()).rejects.toThrow("injected");
    expect(dp.programmed()).toBeUndefined();
    fail = false;
    // Someone also edits the kernel meanwhile; the changes taken by the failed
    // apply are gone, so only a full diff can converge.
    k.sets.get("pal4t-s1")!.members.add("198.18.200.200");
    d.apply([{ type: "ipset-delta", name: "pal4t-s2", family: 4, added: ["198.18.100.2"], removed: [] }]);
    const from = k.log.length;
    await apply();
    expect(k.log.slice(from, from + 3)).toEqual(["iptables-nft-save -t filter", "iptables-nft-save -t raw", "ipset save"]);
    expectKernelEquals(k, d);
    expect(await dp.detectDrift()).toBe(false);
  });

  it("a drift check after tampering repairs it in the next apply, with the pending change, in one write per stage", async () => {
    const k = new FakeKernel();
    const { dp, d, apply } = await programmed(k, snapshot(5, 3, 10));
    k.tables[4].set("pal-pi-c3", []);
    k.sets.get("pal4t-s0")!.members.delete(addr(1));
    k.tables[4].get("FORWARD")!.splice(0, 1);
    d.apply([{ type: "ipset-delta", name: "pal4t-s1", family: 4, added: ["198.18.100.1"], removed: [] }]);
    expect(await dp.detectDrift()).toBe(true);
    const from = k.log.length;
    await apply();
    expect(k.log.slice(from)).toEqual(["ipset restore", "iptables-nft-restore --noflush --wait 10"]);
    expectKernelEquals(k, d);
    // No drift found: the next change is planned from the change again.
    expect(await dp.detectDrift()).toBe(false);
    d.apply([{ type: "ipset-delta", name: "pal4t-s1", family: 4, added: ["198.18.100.2"], removed: [] }]);
    const next = k.log.length;
    await apply();
    expect(k.log.slice(next)).toEqual(["ipset restore"]);
  });
});

/** A Set that counts how often it is read as a whole (iterated) or probed. */
class CountingSet<T> extends Set<T> {
  static iterations = 0;
  static probes = 0;
  override has(v: T): boolean { CountingSet.probes++; return super.has(v); }
  override values(): SetIterator<T> { CountingSet.iterations++; return super.values(); }
  override keys(): SetIterator<T> { CountingSet.iterations++; return super.keys(); }
  override entries(): SetIterator<[T, T]> { CountingSet.iterations++; return super.entries(); }
  override forEach(cb: (v: T, k: T, s: Set<T>) => void): void { CountingSet.iterations++; super.forEach(cb); }
  override [Symbol.iterator](): SetIterator<T> { CountingSet.iterations++; return super[Symbol.iterator](); }
}

/** A read-only map view that records which keys were looked up and whether it was iterated. */
function counting<V>(m: ReadonlyMap<string, V>) {
  const looked: string[] = [];
  let iterated = 0;
  const view: ReadonlyMap<string, V> = {
    get: (k) => { looked.push(k); return m.get(k); },
    has: (k) => { looked.push(k); return m.has(k); },
    get size() { return m.size; },
    forEach: (cb) => { iterated++; m.forEach((v, k) => cb(v, k, view)); },
    entries: () => { iterated++; return m.entries(); },
    keys: () => { iterated++; return m.keys(); },
    values: () => { iterated++; return m.values(); },
    [Symbol.iterator]: () => { iterated++; return m[Symbol.iterator](); },
  };
  return { view, looked, iterated: () => iterated };
}

describe("dataplane: the cost of an apply planned from the change", () => {
  it("one member added: no member of any set is iterated, no other set or chain is looked at", async () => {
    const k = new FakeKernel();
    const dp = createDataplane({ runner: k, backend: "nft", families: [4], logger });
    const d = new DesiredState();
    d.apply(snapshot(200, 50, 200));
    // Every desired set's members, counted from here on.
    for (const s of d.sets.values()) s.members = new CountingSet(s.members);
    const sets = counting<DesiredSet>(d.sets);
    const chains = counting(d.chains);
    const take = () => ({ input: buildPlanInput({ base: BASE, families: [4], desired: { chains: chains.view, sets: sets.view } }), changes: d.takeChanges() });
    await dp.applyFrom(take); // the full apply: everything is read, once
    CountingSet.iterations = 0;
    CountingSet.probes = 0;
    sets.looked.length = 0;
    chains.looked.length = 0;
    const setsIterated = sets.iterated();
    const chainsIterated = chains.iterated();

    d.apply([{ type: "ipset-delta", name: "pal4t-s17", family: 4, added: ["198.18.250.1"], removed: [] }]);
    await dp.applyFrom(take);
    expect(CountingSet.iterations).toBe(0);
    expect(CountingSet.probes).toBeLessThanOrEqual(2); // the added member, in the desired set (and perhaps once more)
    expect(sets.iterated()).toBe(setsIterated);
    expect(new Set(sets.looked)).toEqual(new Set(["pal4t-s17"]));
    expect(chains.iterated()).toBe(chainsIterated);
    expect(chains.looked).toEqual([]);
    expect([...k.sets.get("pal4t-s17")!.members]).toContain("198.18.250.1");
    expect(dp.programmed()).toEqual({ rules: { 4: expect.any(Number), 6: 0 }, sets: 50 });
  });
});

describe("dataplane: random histories with failures and tampering always converge", () => {
  // Every set type the layouts use (tag, interface, MAC and list sets), chains
  // that match against them and jump to each other, both families; each state
  // one the kernel accepts (support/random-dataplane.ts). The fake kernel
  // refuses what the kernel refuses, so a planner that orders a batch wrongly
  // (a set destroyed while a rule or a list still holds it, a chain deleted
  // while jumped to, a member added before its set exists, a MAC deleted
  // after its replacement was added) fails here.
  const FAMILIES = [4, 6] as const;
  const BASE2 = driverBaseChains(["tap"], FAMILIES);

  /** The fake kernel holds exactly the base chains, `d`'s chains and sets, and the hooks, in both families. */
  function expectKernelHolds(k: FakeKernel, d: DesiredState, what: string): void {
    for (const f of FAMILIES) {
      const want: Record<string, readonly string[]> = {};
      for (const c of [...BASE2.values(), ...d.chains.values()]) if (c.family === f) want[c.name] = c.rules;
      const have: Record<string, string[]> = {};
      for (const [n, rules] of k.tables[f]) if (n.startsWith("pal-")) have[n] = rules.map(strip);
      expect(have, `${what}: IPv${f} chains`).toEqual(want);
      expect(k.chain(f, "FORWARD")!.map(strip), what).toEqual(["-j pal-FORWARD"]);
      expect(k.chain(f, "INPUT")!.map(strip), what).toEqual(["-j pal-INPUT"]);
    }
    const sets = (m: Iterable<[string, { members: Set<string> }]>) => Object.fromEntries([...m].map(([n, s]) => [n, [...s.members].sort()]));
    expect(sets(k.sets), `${what}: sets`).toEqual(sets(d.sets));
  }

  /**
   * The fake's `ipset -` sessions, with failures injected into a batch
   * written to one (DESIGN §6.7): the process killed after some of the
   * batch's lines were carried out (none, some, all but the sentinel); an
   * error printed (perhaps after the sentinel: it then fails the next
   * batch); the process hung (no answer: the dataplane's timeout).
   */
  function injectingSessions(k: FakeKernel, rnd: () => number, failing: () => number, injected: { count: number; stalls: number }): CommandRunner["openSession"] {
    return (cmd, args, ro) => {
      const inner = k.openSession(cmd, args, ro);
      const outs: ((t: string) => void)[] = [];
      inner.onOutput((t) => { for (const f of outs) f(t); });
      return {
        get pid() { return inner.pid; },
        get ended() { return inner.ended; },
        onOutput: (fn) => { outs.push(fn); },
        onExit: (fn) => inner.onExit(fn),
        kill: () => inner.kill(),
        write(text) {
          if (rnd() >= failing()) { inner.write(text); return; }
          injected.count++;
          const r = rnd();
          if (r < 0.45) {
            const lines = text.split("\n").filter(Boolean).slice(0, -1); // without the sentinel
            const cut = Math.floor(rnd() * (lines.length + 1));
            if (cut) inner.write(`${lines.slice(0, cut).join("\n")}\n`);
            setImmediate(() => setImmediate(() => void inner.kill("killed by SIGKILL (injected)")));
          } else if (r < 0.9) {
            inner.write(text);
            setImmediate(() => { for (const f of outs) f("ipset v7.17: injected error\n"); });
          } else {
            injected.stalls++; // nothing is read: the batch times out
          }
        },
      };
    };
  }
  const sessionTotals = { injected: 0, betweenKills: 0, batches: 0 };

  for (const viaSession of [false, true]) for (let seed = 1; seed <= (viaSession ? 30 : 40); seed++) {
    it(`seed ${seed}${viaSession ? ", set batches through an ipset session with failures injected into it" : ""}`, async () => {
      const rnd = mulberry32(seed);
      const k = new FakeKernel();
      let failing = 0;
      let sessionFailing = 0;
      const injected = { count: 0, stalls: 0 };
      // An injected failure happens before the command runs; the kernel's own
      // refusals are the fake's (a failed ipset restore keeps what came before).
      const runner: CommandRunner = {
        run: (cmd, args, input) => (rnd() < failing ? Promise.reject(new Error("injected")) : k.run(cmd, args, input)),
        openSession: viaSession ? injectingSessions(k, rnd, () => sessionFailing, injected) : undefined,
      };
      // The breaker off (backoff 0): these histories are about recovering from each failure (its own tests: ipset-session.test.ts).
      const dp = createDataplane({ runner, backend: "nft", families: [...FAMILIES], logger, ipsetSession: viaSession, ipsetSessionTimeoutMs: 100, ipsetSessionBackoffMs: 0 });
      const d = new DesiredState();
      let world = emptyWorld(FAMILIES);
      d.apply(updatesBetween(rnd, emptyWorld([]), world));
      const take = () => ({ input: buildPlanInput({ base: BASE2, families: FAMILIES, desired: d }), changes: d.takeChanges() });
      let mayReadBack = true; // start
      let tampered = false;
      let reads = 0;
      let incrementals = 0;
      for (let step = 0; step < 60; step++) {
        const what = `seed ${seed} step ${step}`;
        failing = rnd() < 0.15 ? 0.4 : 0;
        sessionFailing = viaSession && rnd() < 0.2 ? 0.6 : 0;
        // Sometimes several batches arrive before an apply.
        for (let b = 1 + (rnd() < 0.2 ? 1 : 0); b > 0; b--) {
          const next = mutate(rnd, world, FAMILIES);
          d.apply(updatesBetween(rnd, world, next));
          world = next;
        }
        if (rnd() < 0.15) { await tamper(rnd, k, FAMILIES); tampered = true; }
        // The session's process killed between applies: the next set batch goes through a restore.
        if (viaSession && rnd() < 0.05 && k.sessions.some((x) => !x.ended)) {
          for (const x of k.sessions) await x.kill("killed by SIGKILL (injected)");
          sessionTotals.betweenKills++;
        }
        const from = k.log.length;
        try {
          if (rnd() < 0.2) {
            await dp.detectDrift();
            tampered = false;
          }
          const applyFrom = k.log.length;
          await dp.applyFrom(take);
          const readBack = k.log.slice(applyFrom).some((l) => l.endsWith("save") || l.includes("save "));
          if (readBack) { reads++; tampered = false; } else incrementals++;
          // A read-back only at start or after a failure (drift checks read on their own).
          if (!mayReadBack) expect(readBack, what).toBe(false);
          mayReadBack = false;
          if (!tampered) expectKernelHolds(k, d, what);
        } catch (err) {
          // Only an injected failure, or the kernel refusing a plan made
          // before someone else's edit was seen, may fail an apply.
          // A batch with no answer within the (short) timeout: an injected
          // stall, or on a loaded machine a late answer — to the dataplane
          // the same failure, which it must recover from like the others.
          const stalled = (err as Error).message.includes("no answer within");
          if (!(err as Error).message.includes("injected") && !stalled) {
            const refused = k.refusals.slice(from).find((r) => r !== undefined);
            expect(tampered, `${what}: the kernel refused a plan made against what it holds: ${refused} (${(err as Error).message})`).toBe(true);
          }
          mayReadBack = true;
        }
      }
      // Quiet again: one drift check and one apply converge, whatever happened.
      failing = 0;
      sessionFailing = 0;
      await dp.detectDrift();
      await dp.applyFrom(take);
      expectKernelHolds(k, d, `seed ${seed} end`);
      // The reference, kept by edits, is exactly what the kernel holds.
      expect(await dp.detectDrift()).toBe(false);
      expect(incrementals).toBeGreaterThan(reads);
      if (viaSession) {
        sessionTotals.injected += injected.count;
        sessionTotals.batches += k.log.filter((l) => l === "ipset -").length;
        // The session is the dataplane's to end: none is left running.
        await dp.close();
        await new Promise((r) => setImmediate(r));
        expect(k.sessions.filter((x) => !x.ended)).toEqual([]);
      }
    });
  }

  it("the session histories did go through sessions, with failures injected", () => {
    expect(sessionTotals.batches).toBeGreaterThan(200);
    expect(sessionTotals.injected).toBeGreaterThan(15);
    expect(sessionTotals.betweenKills).toBeGreaterThan(5);
  });
});

describe("driver: applies proportional to the change", () => {
  let driver: Driver | undefined;
  let ctl: FakeController | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
  });

  async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it.each([
    // The ended-connection report chains carry the epoch in their prefixes (DESIGN §6.12); pal-end, the counted one, does not change.
    { ending: true, chains: [":pal-FORWARD - [0:0]", ":pal-INPUT - [0:0]", ":pal-ct-admit - [0:0]", ":pal-end-in - [0:0]", ":pal-end-in-r - [0:0]", ":pal-end-out - [0:0]", ":pal-end-out-r - [0:0]", ":pal-pi-c9 - [0:0]"] },
    { ending: false, chains: [":pal-pi-c9 - [0:0]"] },
  ])("a member added, then a chain changed: one add line to the ipset session, then one restore of that chain (ending revoked connections: $ending — the policy epoch advances in the same restore)", async ({ ending, chains }) => {
    const k = new FakeKernel();
    ctl = await startFakeController();
    // No periodic or post-write read-backs during the test.
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false, endRevokedConnections: ending });
    await until(() => ctl!.connected(), "connected");
    ctl.send(1, snapshot(50, 20, 100), true);
    await until(() => driver!.appliedRevision === 1, "revision 1");
    const from = k.log.length;
    ctl.send(2, [{ type: "ipset-delta", name: "pal4t-s5", family: 4, added: ["198.18.250.1"], removed: [] }]);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    // The driver's session (DESIGN §6.7), the line and its sentinel; no process started.
    expect(k.log.slice(from)).toEqual(["ipset -"]);
    expect(k.inputs.slice(from)).toEqual(["add pal4t-s5 198.18.250.1 -exist\nversion\n"]);

    const next = k.log.length;
    ctl.send(3, [{ type: "chain-update", chain: chain("pal-pi-c9", ["-p tcp --dport 9999 -j ACCEPT"]) }]);
    await until(() => ctl!.acks().includes(3), "revision 3 acknowledged");
    expect(k.log.slice(next)).toEqual(["iptables-nft-restore --noflush --wait 10"]);
    // A member added to a set only allow rules use revokes nothing: no epoch, no chain.
    expect(k.inputs[next]!.split("\n").filter((l) => l.startsWith(":")).sort()).toEqual(chains);
    expect(k.chain(4, "pal-pi-c9")!.map(strip)).toEqual(["-p tcp --dport 9999 -j ACCEPT"]);
  });

  it("a new snapshot (reconnect, failover) is planned in full against what was programmed, without a read-back", async () => {
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], driftCheckMs: 3_600_000, postWriteCheckMs: 3_600_000, readInterface: async () => "up", rulesetMonitor: false });
    await until(() => ctl!.connected(), "connected");
    ctl.send(1, snapshot(5, 3, 10), true);
    await until(() => driver!.appliedRevision === 1, "revision 1");
    const from = k.log.length;
    // The new snapshot no longer has pal-pi-c4 and pal4t-s2: only a full diff finds that.
    const second = snapshot(5, 3, 10).filter((u) => !(u.type === "chain-update" && u.chain.name === "pal-pi-c4") && !(u.type === "ipset-update" && u.name === "pal4t-s2"));
    ctl.send(2, second, true);
    await until(() => ctl!.acks().includes(2), "revision 2 acknowledged");
    expect(k.log.slice(from).filter((l) => l.includes("save"))).toEqual([]);
    expect(k.chain(4, "pal-pi-c4")).toBeUndefined();
    expect(k.sets.has("pal4t-s2")).toBe(false);
    expect(k.sets.has("pal4t-s1")).toBe(true);
  });
});
