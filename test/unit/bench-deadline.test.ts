// Bench sections run under a deadline (test/bench/deadline.ts, DESIGN §8.6):
// a hang must end as a failure that names the section and what it waited
// for, after the section's own cleanup ran — never as a silent wait.
import { describe, expect, it } from "vitest";
import { DeadlineExceeded, orAbort, withDeadline } from "../../test/bench/deadline.js";

const never = () => new Promise<void>(() => undefined);

describe("bench section deadlines", () => {
  it("a section stuck in a wait is aborted: its finally runs, and the failure names the section and the wait's progress", async () => {
    let cleaned = false;
    let inSync = 0;
    const t = setInterval(() => inSync++, 5);
    const err = await withDeadline("fanout", 60, async (signal) => {
      try {
        await orAbort(never(), signal, () => `connecting: ${inSync > 0 ? "some" : "no"} streams in sync`);
      } finally {
        cleaned = true;
      }
    }).catch((e: unknown) => e);
    clearInterval(t);
    expect(err).toBeInstanceOf(DeadlineExceeded);
    expect((err as Error).message).toBe("section 'fanout' did not finish within its deadline of 0 s: aborted while connecting: some streams in sync");
    expect(cleaned).toBe(true);
  });

  it("a section that ignores its signal fails after the grace period, saying its cleanup may not have run", async () => {
    const err = await withDeadline("flows", 30, () => never(), 30).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceeded);
    expect((err as Error).message).toMatch(/^section 'flows' did not finish within its deadline of 0 s: still running 0 s after it was aborted/);
  });

  it("a synchronous section cannot be interrupted, but returning late fails it", async () => {
    const err = await withDeadline("calc", 20, () => { const end = Date.now() + 50; while (Date.now() < end); return 1; }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceeded);
    expect((err as Error).message).toMatch(/^section 'calc' did not finish within its deadline/);
  });

  it("in time: the section's value; its own failure is passed on as it is", async () => {
    await expect(withDeadline("e2e", 1_000, async () => 42)).resolves.toBe(42);
    const own = new Error("etcd exited");
    await expect(withDeadline("e2e", 1_000, async () => { throw own; })).rejects.toBe(own);
  });

  it("orAbort passes a result or a failure through, and rejects once aborted", async () => {
    const ac = new AbortController();
    await expect(orAbort(Promise.resolve(7), ac.signal, "x")).resolves.toBe(7);
    await expect(orAbort(Promise.reject(new Error("boom")), ac.signal, "x")).rejects.toThrow("boom");
    ac.abort();
    await expect(orAbort(never(), ac.signal, "waiting")).rejects.toThrow("aborted while waiting");
  });
});
