// The ipset session's parser and failure handling (DESIGN §6.7) against a
// scripted `ipset -`: output the fake kernel's session does not produce
// (ipset 7.x's protocol warning on a protocol-6 kernel) and processes that
// do not end when killed. The real ipset is in test/dataplane/ipset-session.test.ts.
import { describe, expect, it } from "vitest";
import type { CommandRunner, CommandSession } from "../../services/driver/kernel/command-runner.js";
import { IpsetSessionError, openIpsetSession } from "../../services/driver/kernel/ipset-session.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { createLogger } from "../../services/runtime/logger.js";
import { FakeKernel } from "../support/fake-kernel.js";

const WARNING = "Warning: Kernel support protocol versions 6-6 while userspace supports protocol versions 6-7";
const VERSION = "ipset v7.10, protocol version: 7";

/**
 * An `ipset -` as the real one answers: a prompt before each line is read,
 * `version` answered by `versionOutput` (its lines), a line `answer` maps to
 * a message printed after it; killing it ends it unless `unkillable`.
 */
export function scriptedIpset(o: { versionOutput?: string[]; answer?: (line: string) => string | undefined; unkillable?: boolean; warnOnce?: boolean } = {}) {
  const outs: ((t: string) => void)[] = [];
  const exits: ((why: string) => void)[] = [];
  let ended: string | undefined;
  const emit = (t: string) => setImmediate(() => { if (ended === undefined) for (const f of outs) f(t); });
  const end = (why: string) => { if (ended !== undefined) return; ended = why; for (const f of exits.splice(0)) f(why); };
  const written: string[] = [];
  let checked = false;
  const session: CommandSession = {
    pid: 4242,
    get ended() { return ended !== undefined; },
    write(text) {
      if (ended !== undefined) return;
      written.push(text);
      for (const l of text.split("\n").filter(Boolean)) {
        // libipset checks the kernel's protocol once per session, with the first command that reaches it.
        if (o.warnOnce && !checked) { checked = true; emit(`${WARNING}\n`); }
        if (l === "version") emit(`${(o.versionOutput ?? [VERSION]).join("\n")}\nipset> `);
        else { const m = o.answer?.(l); emit(m ? `${m}\nipset> ` : "ipset> "); }
      }
    },
    onOutput(fn) { outs.push(fn); },
    onExit(fn) { if (ended !== undefined) fn(ended); else exits.push(fn); },
    kill() {
      if (ended !== undefined) return Promise.resolve();
      if (o.unkillable) return new Promise<void>(() => undefined);
      return new Promise<void>((r) => { exits.push(() => r()); setImmediate(() => end("killed by SIGKILL")); });
    },
  };
  const runner: CommandRunner = { run: () => Promise.reject(new Error("no commands here")), openSession: () => { emit("ipset> "); return session; } };
  return { runner, session, written, get endedWhy() { return ended; } };
}

const LINES = ["add pal4t-a 198.18.0.1 -exist", "del pal4t-a 198.18.0.2 -exist"];

describe("ipset session: the protocol warning of ipset 7.x on a protocol-6 kernel", () => {
  it.each([
    { where: "before the sentinel", out: [WARNING, VERSION] },
    { where: "after the sentinel", out: [VERSION, WARNING] },
    { where: "once, with the first line of the session (libipset's version_checked)", out: [VERSION], warnOnce: true },
  ])("printed $where: batches succeed, one after another", async ({ out, warnOnce }) => {
    const f = scriptedIpset({ versionOutput: out, warnOnce });
    const s = openIpsetSession(f.runner, { timeoutMs: 2_000 })!;
    for (let i = 0; i < 3; i++) await s.run(LINES);
    expect(f.written).toHaveLength(3);
    expect(s.ended).toBe(false);
    await s.close();
  });

  it("a real error next to the warning still fails the batch, attributed to its line", async () => {
    const f = scriptedIpset({ versionOutput: [WARNING, VERSION], answer: (l) => (l.startsWith("del") ? "ipset v7.10: Element cannot be deleted from the set: it's not added" : undefined) });
    const s = openIpsetSession(f.runner, { timeoutMs: 2_000 })!;
    const err = await s.run(LINES).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(IpsetSessionError);
    expect((err as IpsetSessionError).reason).toBe("error");
    expect((err as Error).message).toContain("line 2 of 2: ipset v7.10: Element cannot be deleted");
    expect(s.ended).toBe(true);
  });

  it("any other Warning line is an error", async () => {
    const f = scriptedIpset({ versionOutput: ["Warning: something else", VERSION] });
    const s = openIpsetSession(f.runner, { timeoutMs: 2_000 })!;
    await expect(s.run(LINES)).rejects.toThrow(/Warning: something else/);
  });
});

describe("ipset session: a failed batch whose process does not end when killed", () => {
  it("rejects after the bounded wait, saying the process did not end; the session is not used again", async () => {
    const f = scriptedIpset({ answer: () => "ipset v7.10: injected error", unkillable: true });
    const s = openIpsetSession(f.runner, { timeoutMs: 2_000, killWaitMs: 50 })!;
    const t0 = Date.now();
    const err = await Promise.race([s.run(LINES).then(() => undefined, (e: unknown) => e), new Promise((r) => setTimeout(() => r("hung"), 3_000))]);
    expect(err).toBeInstanceOf(IpsetSessionError);
    expect((err as Error).message).toMatch(/injected error.*did not end within 50 ms of SIGKILL/);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(s.ended).toBe(true);
    await expect(s.run(LINES)).rejects.toThrow(/had ended before the batch/);
  });
});

describe("dataplane: the ipset session circuit breaker and start failures (DESIGN §6.7)", () => {
  const BASE = driverBaseChains(["tap"], [4]);
  const logger = createLogger({ name: "test", level: "silent" });
  const SET = "pal4t-s0";

  /**
   * A dataplane on the fake kernel whose sessions (the fake's) fail every
   * batch from the `failFrom`-th of each session on (an error printed after
   * the lines were carried out), or whose start throws (`openThrows`). The
   * clock is the test's.
   */
  async function setup(o: { failFrom?: number; openThrows?: boolean }) {
    const k = new FakeKernel();
    const clock = { t: 0 };
    const ev = { starts: 0, failed: [] as string[], disabled: [] as [string, number][] };
    const runner: CommandRunner = {
      run: (cmd, args, input) => k.run(cmd, args, input),
      openSession: (cmd, args, ro) => {
        if (o.openThrows) throw new Error("spawn ipset ENOMEM (injected)");
        const inner = k.openSession(cmd, args, ro);
        const outs: ((t: string) => void)[] = [];
        inner.onOutput((t) => { for (const f of outs) f(t); });
        let batches = 0;
        return {
          get pid() { return inner.pid; },
          get ended() { return inner.ended; },
          onOutput: (fn) => { outs.push(fn); },
          onExit: (fn) => inner.onExit(fn),
          kill: () => inner.kill(),
          write(text) {
            inner.write(text);
            if (++batches >= (o.failFrom ?? Infinity)) setImmediate(() => { for (const f of outs) f("ipset v7.17: injected error\n"); });
          },
        };
      },
    };
    const dp = createDataplane({
      runner, backend: "nft", families: [4], logger, ipsetSession: true, ipsetSessionTimeoutMs: 2_000, now: () => clock.t,
      sessionEvents: { started: () => { ev.starts++; }, failed: (r) => { ev.failed.push(r); }, disabled: (r, ms) => { ev.disabled.push([r, ms]); } },
    });
    const d = new DesiredState();
    d.apply([
      ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((name) => ({ type: "chain-update" as const, chain: { table: "filter" as const, family: 4 as const, name, rules: ["-j DROP"] } })),
      { type: "ipset-update", name: SET, family: 4, members: ["198.18.0.1"] },
    ]);
    const apply = () => dp.applyFrom(() => ({ input: buildPlanInput({ base: BASE, families: [4], desired: d }), changes: d.takeChanges() }));
    await apply(); // the snapshot: creates go through a restore
    let n = 1;
    /** One member added, applied: "ok", or the error's message. */
    const addOne = async (): Promise<string> => {
      n++;
      d.apply([{ type: "ipset-delta", name: SET, family: 4, added: [`198.18.0.${n}`], removed: [] }]);
      return apply().then(() => "ok", (e: Error) => e.message);
    };
    const members = () => [...k.sets.get(SET)!.members].sort();
    const want = () => Array.from({ length: n }, (_, i) => `198.18.0.${i + 1}`).sort();
    return { k, dp, clock, ev, addOne, members, want };
  }

  it("a session that fails every batch: after its first failure sessions are off for 1 min, doubling; set batches go through restores and applies succeed", async () => {
    const s = await setup({ failFrom: 1 });
    expect(await s.addOne()).toMatch(/ipset session: .*injected error/);
    expect(s.ev.disabled).toEqual([["error", 60_000]]);
    // Off: every apply succeeds through a restore, no session started.
    for (let i = 0; i < 5; i++) {
      s.clock.t += 10_000;
      const from = s.k.log.length;
      expect(await s.addOne()).toBe("ok");
      expect(s.k.log.slice(from).filter((l) => l.startsWith("ipset"))).toEqual(i === 0 ? ["ipset save", "ipset restore"] : ["ipset restore"]);
    }
    expect(s.ev.starts).toBe(1);
    expect(s.members()).toEqual(s.want());
    // After the backoff one session is tried again; it fails on its first batch: off for 2 min.
    s.clock.t += 10_001;
    expect(await s.addOne()).toMatch(/injected error/);
    expect(s.ev.starts).toBe(2);
    expect(s.ev.disabled).toEqual([["error", 60_000], ["error", 120_000]]);
    s.clock.t += 60_000;
    expect(await s.addOne()).toBe("ok");
    expect(s.ev.starts).toBe(2);
    expect(s.members()).toEqual(s.want());
    await s.dp.close();
  });

  it("sessions that work once, then fail: off after 3 failures in a row", async () => {
    const s = await setup({ failFrom: 2 });
    const results: string[] = [];
    for (let i = 0; i < 12; i++) results.push(await s.addOne());
    // session, fail, restore (apply succeeds) — three times; then off: restores alone.
    const failures = results.filter((r) => r !== "ok").length;
    expect(failures).toBe(3);
    expect(s.ev.disabled).toEqual([["error", 60_000]]);
    expect(results.slice(-4)).toEqual(["ok", "ok", "ok", "ok"]);
    expect(s.ev.starts).toBe(3);
    expect(s.members()).toEqual(s.want());
    await s.dp.close();
  });

  it("a session whose start throws: counted (start), the batch goes through a restore in the same apply, sessions off", async () => {
    const s = await setup({ openThrows: true });
    const from = s.k.log.length;
    expect(await s.addOne()).toBe("ok");
    expect(s.k.log.slice(from)).toEqual(["ipset restore"]);
    expect(s.ev.failed).toEqual(["start"]);
    expect(s.ev.disabled).toEqual([["start", 60_000]]);
    expect(s.ev.starts).toBe(0);
    expect(await s.addOne()).toBe("ok");
    expect(s.ev.failed).toEqual(["start"]);
    expect(s.members()).toEqual(s.want());
  });
});
