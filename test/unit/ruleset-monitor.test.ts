// The tamper watch's logic against a scripted `nft monitor` (lines as nft
// 1.0.6 prints them for iptables-nft edits, checked in a namespace): which
// transactions ask for a drift check, debouncing, our own writes ignored by
// PID, restart with backoff, and a missing nft.
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../services/runtime/logger.js";
import { createRulesetMonitor, defaultMonitorCommand, touchesOurs, type MonitorProcess } from "../../services/driver/monitors/ruleset-monitor.js";

const logger = createLogger({ name: "test", level: "silent" });
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fakeNft() {
  const spawned: { out: PassThrough; end: (how: { errorCode?: string; exitCode?: number; detail: string }) => void; killed: boolean }[] = [];
  const spawn = (): MonitorProcess => {
    const out = new PassThrough();
    let end!: (how: { errorCode?: string; exitCode?: number; detail: string }) => void;
    const exited = new Promise<{ errorCode?: string; exitCode?: number; detail: string }>((r) => (end = r));
    const p = { out, end, killed: false };
    spawned.push(p);
    return { stdout: out, exited, kill: () => { p.killed = true; end({ detail: "killed" }); } };
  };
  return { spawned, spawn };
}

describe("touchesOurs", () => {
  it("our chains, the hook chains and the filter tables of ip/ip6; nothing else", () => {
    expect(touchesOurs("delete rule ip filter pal-FORWARD handle 2")).toBe(true);
    expect(touchesOurs("add rule ip6 filter pal-tw-tap1 iifname \"x\" accept")).toBe(true);
    expect(touchesOurs("delete rule ip filter FORWARD handle 5")).toBe(true);
    expect(touchesOurs("insert rule ip filter INPUT counter packets 0 bytes 0 jump pal-INPUT")).toBe(true);
    expect(touchesOurs("delete chain ip filter pal-a")).toBe(true);
    expect(touchesOurs("delete table ip filter")).toBe(true);
    expect(touchesOurs("add rule ip filter OUTPUT counter accept")).toBe(false);
    expect(touchesOurs("add rule ip nat POSTROUTING masquerade")).toBe(false);
    expect(touchesOurs("add rule inet fw pal-x accept")).toBe(false);
    expect(touchesOurs("add element ip filter myset { 1.2.3.4 }")).toBe(false);
  });
});

describe("createRulesetMonitor", () => {
  it("asks for one check per burst of foreign edits, none for our own writes or unrelated chains", async () => {
    const nft = fakeNft();
    const calls: string[] = [];
    const m = createRulesetMonitor({ logger, spawn: nft.spawn, debounceMs: 30, minIntervalMs: 0, isOwnPid: (p) => p === 100, onChange: (r) => calls.push(r) });
    await wait(60);
    expect(calls).toEqual(["ruleset monitor started"]); // events may have been missed before
    const out = nft.spawned[0]!.out;
    // Our own restore (pid 100): ignored.
    out.write("delete rule ip filter pal-FORWARD handle 2\nadd rule ip filter pal-FORWARD accept\n# new generation 7 by process 100 (iptables-nft-re)\n");
    // Someone else's edit of an unrelated chain: ignored.
    out.write("add rule ip filter OUTPUT counter accept\n# new generation 8 by process 200 (iptables-nft)\n");
    await wait(60);
    expect(calls).toHaveLength(1);
    // Two foreign edits of ours in quick succession: one check.
    out.write("delete rule ip filter pal-FORWARD handle 3\n# new generation 9 by process 201 (iptables-nft)\n");
    out.write("delete rule ip filter FORWARD handle 5\n# new generation 10 by process 202 (iptables-nft)\n");
    await wait(60);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toContain("process 201 (iptables-nft)");
    expect(calls[1]).toContain("process 202 (iptables-nft)");
    // A transaction whose writer nft cannot name is checked.
    out.write("delete rule ip filter pal-INPUT handle 4\n# new generation 11\n");
    await wait(60);
    expect(calls).toHaveLength(3);
    await m.stop();
    expect(nft.spawned[0]!.killed).toBe(true);
  });

  it("a writer in a tight loop gets at most one check per minimum interval", async () => {
    const nft = fakeNft();
    const at: number[] = [];
    const m = createRulesetMonitor({ logger, spawn: nft.spawn, debounceMs: 5, minIntervalMs: 100, onChange: () => at.push(Date.now()) });
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) {
      nft.spawned[0]!.out.write(`add rule ip filter FORWARD accept\n# new generation ${i} by process 300 (iptables-nft)\n`);
      await wait(10);
    }
    await wait(150);
    await m.stop();
    // ~650 ms of edits: the start-up check plus about one per 100 ms, not one per edit.
    expect(at.length).toBeGreaterThanOrEqual(4);
    expect(at.length).toBeLessThanOrEqual(9);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(95);
    expect(at[0]! - t0).toBeLessThan(100);
  });

  it("restarts a monitor that ended (with a check each time); gives up quietly when nft is missing", async () => {
    const nft = fakeNft();
    const calls: string[] = [];
    const running: boolean[] = [];
    const m = createRulesetMonitor({ logger, spawn: nft.spawn, debounceMs: 5, minIntervalMs: 0, restartInitialMs: 20, restartMaxMs: 40, onChange: (r) => calls.push(r), onRunning: (u) => running.push(u) });
    await wait(20);
    nft.spawned[0]!.end({ exitCode: 1, detail: "netlink: Error: Operation not permitted" });
    await wait(100);
    expect(nft.spawned.length).toBe(2);
    expect(calls.filter((c) => c === "ruleset monitor started")).toHaveLength(2);
    expect(running).toEqual([true, false, true]);
    await m.stop();

    const gone = fakeNft();
    const m2 = createRulesetMonitor({ logger, spawn: gone.spawn, restartInitialMs: 5, restartMaxMs: 5, onChange: () => undefined });
    gone.spawned[0]!.end({ errorCode: "ENOENT", detail: "spawn nft ENOENT" });
    await wait(50);
    expect(gone.spawned.length).toBe(1);
    expect(m2.running).toBe(false);
    await m2.stop();
  });

  it("a missing nft really ends as 'not found' through the default spawner (no restart loop)", async () => {
    const calls: string[] = [];
    // Polled, not a fixed sleep: spawning takes a while on a loaded machine.
    const until = async (cond: () => boolean) => { for (const end = Date.now() + 10_000; !cond() && Date.now() < end;) await wait(20); };
    const m = createRulesetMonitor({ logger, command: ["palisade-no-such-nft", "monitor"], minIntervalMs: 0, restartInitialMs: 5, restartMaxMs: 5, onChange: (r) => calls.push(r) });
    await until(() => calls.length > 0 && !m.running);
    await wait(200); // a restart loop (5 ms backoff) would ask again meanwhile
    expect(m.running).toBe(false);
    expect(calls.length).toBeLessThanOrEqual(1); // one start, no restarts (each would ask again)
    await m.stop();
    // Under setpriv the same ends with exit 127, also taken as "not found".
    let asked = 0;
    const m2 = createRulesetMonitor({ logger, command: ["setpriv", "--pdeathsig", "TERM", "--", "palisade-no-such-nft"], restartInitialMs: 5, restartMaxMs: 5, onChange: () => { asked++; } });
    await until(() => asked > 0 && !m2.running);
    await wait(200);
    expect(m2.running).toBe(false);
    expect(asked).toBeLessThanOrEqual(1);
    await m2.stop();
  });

  it("the default command ties nft's life to the driver's when setpriv exists", () => {
    expect(defaultMonitorCommand("/nonexistent")).toEqual(["nft", "monitor"]);
    expect(defaultMonitorCommand("/usr/bin:/bin").slice(-2)).toEqual(["nft", "monitor"]);
  });
});
