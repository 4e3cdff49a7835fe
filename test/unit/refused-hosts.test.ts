// Records of hosts whose driver is refused at hello (DESIGN §9.3): written
// once per message, kept alive by the driver's retries, bounded, never over
// a host a stream serves, and gone when a stream is accepted or the retries stop.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { HostStatus } from "../../services/contract/status.js";
import { createRefusedHosts } from "../../services/controller/refused-hosts.js";

const hello = { driverVersion: "0.0.9", iptablesBackend: "nft" };
const TOO_OLD = "driver too old: lacks features [set-layout]; upgrade palisade-driver";

function setup(o: { ttlMs?: number; max?: number } = {}) {
  const records = new Map<string, HostStatus>();
  const writes: string[] = [];
  const served = new Set<string>();
  const r = createRefusedHosts({
    setHost: (s) => { records.set(s.hostname, s); writes.push(`set ${s.hostname}`); },
    removeHost: (h) => { records.delete(h); writes.push(`remove ${h}`); },
    served: (h) => served.has(h),
    replicaId: "r1",
    ...o,
  });
  return { r, records, writes, served };
}

describe("refused hosts", () => {
  beforeEach(() => { vi.useFakeTimers(); });
  afterEach(() => { vi.useRealTimers(); });

  it("writes a not-connected record with the refusal, once per message; retries only keep it alive", () => {
    const { r, records, writes } = setup({ ttlMs: 1_000 });
    expect(r.refused("h1", hello, TOO_OLD)).toBe("new");
    expect(records.get("h1")).toMatchObject({ connected: false, inSync: false, lastError: TOO_OLD, driverVersion: "0.0.9", controller: "r1" });
    vi.advanceTimersByTime(900);
    expect(r.refused("h1", hello, TOO_OLD)).toBe("same");
    vi.advanceTimersByTime(900);
    expect(records.has("h1")).toBe(true); // 1,800 ms after the first hello, 900 after the last
    expect(r.refused("h1", hello, "driver too old: lacks features [flow-log]; upgrade palisade-driver")).toBe("new");
    expect(writes).toEqual(["set h1", "set h1"]);
  });

  it("removes the record when the retries stop", () => {
    const { r, records, writes } = setup({ ttlMs: 1_000 });
    r.refused("h1", hello, TOO_OLD);
    vi.advanceTimersByTime(1_001);
    expect(records.has("h1")).toBe(false);
    expect(writes).toEqual(["set h1", "remove h1"]);
    expect(r.size).toBe(0);
  });

  it("never writes over a host a stream serves, and leaves its record alone when one is accepted", () => {
    const { r, records, writes, served } = setup({ ttlMs: 1_000 });
    served.add("busy");
    expect(r.refused("busy", hello, TOO_OLD)).toBe("none");
    r.refused("h1", hello, TOO_OLD);
    served.add("h1");
    r.accepted("h1");
    vi.advanceTimersByTime(5_000);
    expect(writes).toEqual(["set h1"]); // the accepted stream's record is not removed by the refusal's expiry
    expect(records.has("busy")).toBe(false);
  });

  it("a record whose expiry finds the host served is not removed", () => {
    const { r, writes, served } = setup({ ttlMs: 1_000 });
    r.refused("h1", hello, TOO_OLD);
    served.add("h1"); // served by a stream that did not pass through accepted() (another path): still not ours to remove
    vi.advanceTimersByTime(1_001);
    expect(writes).toEqual(["set h1"]);
  });

  it("holds at most `max` records; further hosts are only refused", () => {
    const { r, records } = setup({ max: 2 });
    expect(r.refused("a", hello, TOO_OLD)).toBe("new");
    expect(r.refused("b", hello, TOO_OLD)).toBe("new");
    expect(r.refused("c", hello, TOO_OLD)).toBe("none");
    expect([...records.keys()]).toEqual(["a", "b"]);
    expect(r.refused("a", hello, TOO_OLD)).toBe("same"); // a known host still refreshes
  });

  it("bounds what the client said before it is stored", () => {
    const { r, records } = setup();
    r.refused("h1", { driverVersion: "v".repeat(10_000), iptablesBackend: "b".repeat(500) }, TOO_OLD);
    expect(records.get("h1")!.driverVersion.length).toBe(100);
    expect(records.get("h1")!.iptablesBackend.length).toBe(20);
  });
});
