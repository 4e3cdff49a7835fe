// The ipset session's parser and failure handling (DESIGN §6.7) against a
// scripted `ipset -`: output the fake kernel's session does not produce
// (ipset 7.x's protocol warning on a protocol-6 kernel) and processes that
// do not end when killed. The real ipset is in test/dataplane/ipset-session.test.ts.
import { describe, expect, it } from "vitest";
import type { CommandRunner, CommandSession } from "../../services/driver/kernel/command-runner.js";
import { IpsetSessionError, openIpsetSession } from "../../services/driver/kernel/ipset-session.js";

const WARNING = "Warning: Kernel support protocol versions 6-6 while userspace supports protocol versions 6-7";
const VERSION = "ipset v7.10, protocol version: 7";

/**
 * An `ipset -` as the real one answers: a prompt before each line is read,
 * `version` answered by `versionOutput` (its lines), a line `answer` maps to
 * a message printed after it; killing it ends it unless `unkillable`.
 */
export function scriptedIpset(o: { versionOutput?: string[]; answer?: (line: string) => string | undefined; unkillable?: boolean } = {}) {
  const outs: ((t: string) => void)[] = [];
  const exits: ((why: string) => void)[] = [];
  let ended: string | undefined;
  const emit = (t: string) => setImmediate(() => { if (ended === undefined) for (const f of outs) f(t); });
  const end = (why: string) => { if (ended !== undefined) return; ended = why; for (const f of exits.splice(0)) f(why); };
  const written: string[] = [];
  const session: CommandSession = {
    pid: 4242,
    get ended() { return ended !== undefined; },
    write(text) {
      if (ended !== undefined) return;
      written.push(text);
      for (const l of text.split("\n").filter(Boolean)) {
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
  ])("printed $where with every `version`: batches succeed, one after another", async ({ out }) => {
    const f = scriptedIpset({ versionOutput: out });
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
