// The session harness's measures (test/lab/sessions.ts), on made-up
// timelines: what the revoke e2e test's 100 ms bound rests on.
import { describe, expect, it } from "vitest";
import { deliveryDelayAt, echoSends, sessionGapAt } from "../lab/sessions.js";

const every20 = (from: number, to: number) => Array.from({ length: Math.floor((to - from) / 20) + 1 }, (_, i) => from + 20 * i);

describe("session measures", () => {
  it("receive gap: the window's edges count, the largest gap and its start are found", () => {
    expect(sessionGapAt([100, 120, 300, 320], 100, 340)).toEqual({ gap: 180, at: 120 });
    expect(sessionGapAt([], 0, 500)).toEqual({ gap: 500, at: 0 });
    expect(sessionGapAt([10, 30], 0, 500)).toEqual({ gap: 470, at: 30 });
  });

  it("delivery delay: packets sent and not delivered for 150 ms show as 150 ms", () => {
    const tx = every20(0, 1000);
    const rx = tx.filter((t) => t < 400 || t >= 540).map((t) => t + 1);
    expect(deliveryDelayAt(rx, tx, 0, 1000)).toEqual({ gap: 141, at: 400 });
  });

  it("delivery delay: a sender that paused sends nothing, so its silence is no delay", () => {
    const tx = every20(0, 1000).filter((t) => t < 400 || t >= 600);
    const rx = tx.map((t) => t + 1);
    expect(deliveryDelayAt(rx, tx, 0, 1000).gap).toBe(1);
  });

  it("delivery delay: a receiver not scheduled reads late, which is not counted; a drop outside its stall is", () => {
    const tx = every20(0, 1000);
    const rx = tx.map((t) => (t >= 400 && t < 520 ? 521 : t + 1));
    expect(deliveryDelayAt(rx, tx, 0, 1000, [[400, 521]]).gap).toBe(1);
    expect(deliveryDelayAt(rx, tx, 0, 1000, [[400, 450]]).gap).toBe(71);
    expect(deliveryDelayAt(rx, tx, 0, 1000).gap).toBe(121);
  });
  it("ICMP echo: a ping not scheduled for 150 ms sends late and waits for nothing; three requests dropped wait until the next reply", () => {
    // Every 20 ms, 1 ms round trips; then ping itself pauses 150 ms (seq 5 sent at 250, not 100).
    const paused = [0, 1, 2, 3, 4].map((q) => ({ seq: q, rx: q * 20 + 1, rtt: 1 })).concat([5, 6, 7].map((q, i) => ({ seq: q, rx: 250 + i * 20 + 1, rtt: 1 })));
    expect(deliveryDelayAt(paused.map((e) => e.rx), echoSends(paused), 0, 300).gap).toBe(1);
    // Requests 5, 6, 7 dropped (no replies); 8 answered at 161: 5 was sent at 100 and waited until 161.
    const dropped = [0, 1, 2, 3, 4, 8, 9].map((q) => ({ seq: q, rx: q * 20 + 1, rtt: 1 }));
    expect(echoSends(dropped).slice(5, 8)).toEqual([100, 120, 140]);
    expect(deliveryDelayAt(dropped.map((e) => e.rx), echoSends(dropped), 0, 300)).toEqual({ gap: 61, at: 100 });
  });
});
