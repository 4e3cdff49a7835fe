// sleep(): the wait every retry loop uses (driver reconnects, adapter polls).
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { sleep } from "../../services/util/backoff.js";

describe("sleep", () => {
  it("leaves no abort listener behind, however many times it runs", async () => {
    const ac = new AbortController();
    for (let i = 0; i < 50; i++) await sleep(1, ac.signal);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
  });

  it("returns at once when the signal has already aborted (a stop during work must not wait a whole interval)", async () => {
    const ac = new AbortController();
    ac.abort();
    const t0 = performance.now();
    await sleep(60_000, ac.signal);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it("returns when the signal aborts while waiting", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const t0 = performance.now();
    await sleep(60_000, ac.signal);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
