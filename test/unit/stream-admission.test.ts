// Sync stream admission: token buckets overall and per host, a cap on streams
// that have not said hello (DESIGN §9.3).
import { describe, expect, it } from "vitest";
import { TokenBucket, createStreamAdmission } from "../../services/controller/stream-admission.js";

describe("stream admission", () => {
  it("a token bucket allows its burst, then its rate", () => {
    const b = new TokenBucket(2, 3, 0);
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual([true, true, true, false]);
    expect(b.take(499)).toBe(false);
    expect(b.take(500)).toBe(true);
    expect(b.full(500)).toBe(false);
    expect(b.full(2000)).toBe(true);
  });

  it("refuses a host that reconnects too often before spending the shared budget", () => {
    let now = 0;
    const a = createStreamAdmission({ helloRate: 1, helloBurst: 3, hostHelloRate: 0.1, hostHelloBurst: 1, now: () => now });
    expect(a.hello("h1")).toBeUndefined();
    expect(a.hello("h1")?.reason).toBe("host-rate");
    expect(a.hello("h2")).toBeUndefined();
    expect(a.hello("h3")).toBeUndefined();
    expect(a.hello("h4")?.reason).toBe("rate");
    now = 1000;
    expect(a.hello("h4")).toBeUndefined();
  });

  it("caps streams waiting for a hello; releasing twice frees one slot", () => {
    const a = createStreamAdmission({ maxPendingHellos: 2 });
    const r1 = a.open();
    const r2 = a.open();
    expect(typeof r1).toBe("function");
    expect(typeof r2).toBe("function");
    expect((a.open() as { reason: string }).reason).toBe("pending");
    (r1 as () => void)();
    (r1 as () => void)();
    expect(a.pending).toBe(1);
    expect(typeof a.open()).toBe("function");
  });
});
