// Bridged workload ports (DESIGN §6.3, §9.3): the base chains see them, and
// the driver says when the host cannot pass their frames to iptables —
// in the host's status (every Applied is ok=false with the reason) and not
// only in its log.
import { afterEach, describe, expect, it } from "vitest";
import { type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { bridgeFilterProblem as problemOf, readBridgedPorts, type HostReader } from "../../services/driver/monitors/bridge-check.js";
import { renderBaseChains } from "../../services/driver/plan/base-chains.js";
import { interfaceStatus } from "../../services/driver/monitors/interface-monitor.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";

/** A host: interfaces -> bridge port or not; sysctls (absent: br_netfilter not loaded). */
function host(ifaces: Record<string, boolean>, sysctls: Record<string, string> | undefined): HostReader & { sysctls: Record<string, string> | undefined } {
  const h = {
    sysctls,
    interfaces: async () => Object.keys(ifaces),
    isBridgePort: async (n: string) => ifaces[n] ?? false,
    bridgeOf: async (n: string) => (ifaces[n] ? "br0" : undefined),
    sysctl: async (k: string) => h.sysctls?.[k],
  };
  return h;
}
/** The host check as the driver runs it: one walk of the interfaces, then the sysctls. */
async function bridgeFilterProblem(prefixes: string[], families: (4 | 6)[], h: HostReader): Promise<string | undefined> {
  return problemOf(await readBridgedPorts(prefixes, h), families, h);
}
const ON = { "net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1" };

describe("bridgeFilterProblem", () => {
  it("no bridged workload port: no problem, whatever the sysctls (routed taps, or bridges of other interfaces)", async () => {
    expect(await bridgeFilterProblem(["tap"], [4, 6], host({ tap1: false, eth0: true, br0: false }, undefined))).toBeUndefined();
  });

  it("bridged workload ports with both sysctls on: no problem", async () => {
    expect(await bridgeFilterProblem(["tap"], [4, 6], host({ tap1: true, tap2: true }, ON))).toBeUndefined();
  });

  it("a sysctl off: the problem names the ports, the sysctl and its value, and what to set", async () => {
    const p = await bridgeFilterProblem(["tap"], [4, 6], host({ tap2: true, tap1: true, eth0: true }, { ...ON, "net.bridge.bridge-nf-call-ip6tables": "0" }));
    expect(p).toBe("bridged workload ports are NOT policed: tap1, tap2 are bridge ports but net.bridge.bridge-nf-call-ip6tables=0; " +
      "set net.bridge.bridge-nf-call-iptables=1 and net.bridge.bridge-nf-call-ip6tables=1 on this host (README, \"Troubleshooting\")");
  });

  it("only the driver's families count: ip6tables off on an IPv4-only driver is no problem", async () => {
    expect(await bridgeFilterProblem(["tap"], [4], host({ tap1: true }, { ...ON, "net.bridge.bridge-nf-call-ip6tables": "0" }))).toBeUndefined();
  });

  it("br_netfilter absent: says so", async () => {
    expect(await bridgeFilterProblem(["tap", "vnet"], [4], host({ vnet3: true }, undefined)))
      .toMatch(/^bridged workload ports are NOT policed: vnet3 is a bridge port but br_netfilter is not loaded .*; load br_netfilter and set net\.bridge\.bridge-nf-call-iptables=1/);
  });

  it("many ports: five named, the rest counted", async () => {
    const ifaces = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`tap${i}`, true]));
    expect(await bridgeFilterProblem(["tap"], [4], host(ifaces, { "net.bridge.bridge-nf-call-iptables": "0" })))
      .toContain("tap0, tap1, tap2, tap3, tap4 and 3 more are bridge ports");
  });
});

describe("interface status of a bridge port", () => {
  it("an up tap with a bridge problem is an error saying it; without one it is up; a down one is down", async () => {
    const problem = async (n: string) => (n === "tap1" ? "address contested" : undefined);
    expect(await interfaceStatus("tap1", ["tap"], async () => "up", problem)).toEqual({ state: "error", detail: "address contested" });
    expect(await interfaceStatus("tap2", ["tap"], async () => "up", problem)).toEqual({ state: "up", detail: "" });
    expect(await interfaceStatus("tap1", ["tap"], async () => "down", problem)).toEqual({ state: "down", detail: "operstate down" });
  });
});

describe("base chains and bridged ports", () => {
  for (const family of [4, 6] as const) {
    it(`IPv${family}: without br_netfilter (bridged = false) no physdev match is rendered at all (it would load br_netfilter)`, () => {
      for (const c of renderBaseChains(["tap", "vnet"], family)) expect(c.rules.filter((r) => r.includes("physdev") || r.includes("pal-b"))).toEqual([]);
    });

    it(`IPv${family}: every -i/-o P+ rule has its physdev twin, in the same place of the order`, () => {
      const [fwd, inp] = renderBaseChains(["tap", "vnet"], family, true);
      for (const c of [fwd!, inp!]) {
        // The jumps to the bridge-port chains have no routed twin (below).
        const routed = c.rules.filter((r) => !r.includes("physdev"));
        const twins = c.rules.filter((r) => r.includes("physdev") && !/-j pal-b(r-from|r-to|gf)$/.test(r));
        expect(twins.length).toBe(routed.length);
        // Each physdev rule is its routed twin with the interface match swapped.
        const asRouted = twins.map((r) => r.replace(/-m physdev --physdev-in (\S+)$|-m physdev --physdev-in (\S+) /, (_, a, b) => (a ? `-i ${a}` : `-i ${b} `))
          .replace(/-m physdev --physdev-out (\S+) --physdev-is-bridged/, "-o $1"));
        expect(new Set(asRouted)).toEqual(new Set(routed));
      }
      const at = (r: string) => fwd!.rules.indexOf(r);
      // Stateful checks first, then the roots, then ACCEPT: for bridged frames as for routed ones.
      expect(at("-m physdev --physdev-in tap+ -m conntrack --ctstate INVALID -j DROP")).toBeLessThan(at("-i tap+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
      expect(at("-m physdev --physdev-out vnet+ --physdev-is-bridged -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")).toBeLessThan(at("-i tap+ -j pal-from-wl-dispatch"));
      expect(at("-m physdev --physdev-in vnet+ -j pal-from-wl-dispatch")).toBeLessThan(at("-o tap+ -j pal-to-wl-dispatch"));
      expect(at("-m physdev --physdev-out vnet+ --physdev-is-bridged -j pal-to-wl-dispatch")).toBeLessThan(at("-i tap+ -j ACCEPT"));
      expect(at("-m physdev --physdev-in tap+ -j ACCEPT")).toBeGreaterThan(at("-m physdev --physdev-out vnet+ --physdev-is-bridged -j pal-to-wl-dispatch"));
      const ati = (r: string) => inp!.rules.indexOf(r);
      expect(ati("-m physdev --physdev-in tap+ -m conntrack --ctstate INVALID -j DROP")).toBeGreaterThanOrEqual(0);
      expect(ati("-m physdev --physdev-in tap+ -m conntrack --ctstate INVALID -j DROP")).toBeLessThan(ati("-m physdev --physdev-in tap+ -j pal-wl-to-host"));
      // A bridge port's allowances and guard come before its root (the roots see the bridge, not the port).
      expect(at("-m physdev --physdev-in tap+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")).toBeLessThan(at("-m physdev --physdev-in tap+ -j pal-br-from"));
      expect(at("-m physdev --physdev-in vnet+ -j pal-br-from")).toBeLessThan(at("-i tap+ -j pal-from-wl-dispatch"));
      expect(at("-m physdev --physdev-out vnet+ --physdev-is-bridged -j pal-br-to")).toBeLessThan(at("-o tap+ -j pal-to-wl-dispatch"));
      expect(at("-m physdev --physdev-out tap+ --physdev-is-bridged -j pal-br-to")).toBeGreaterThan(at("-m physdev --physdev-in vnet+ -j pal-from-wl-dispatch"));
      expect(ati("-m physdev --physdev-in tap+ -j pal-bgf")).toBe(ati("-m physdev --physdev-in tap+ -j pal-wl-to-host") - 1);
      expect(ati("-i tap+ -j pal-bgf")).toBe(-1);
    });
  }
});

const logger = createLogger({ name: "test", level: "silent" });
const chain = (name: string, rules: string[]): ChainDef => ({ table: "filter", family: 4, name, rules });
const SNAPSHOT: HostUpdate[] = ["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => ({ type: "chain-update" as const, chain: chain(n, ["-j DROP"]) }));

async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("the driver's host check", () => {
  let driver: Driver | undefined;
  let ctl: FakeController | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
  });

  it("a host with bridged taps and bridge-nf off never acknowledges ok: every Applied carries the reason; it clears when the host is fixed", async () => {
    const h = host({ tap1: true }, { "net.bridge.bridge-nf-call-iptables": "0" });
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up",
      readHost: h, interfacePollMs: 20, rulesetMonitor: false });
    expect(driver.hostProblem).toMatch(/tap1 is a bridge port but net\.bridge\.bridge-nf-call-iptables=0/);
    await until(() => ctl!.connected(), "connected");
    ctl.send(3, SNAPSHOT, true, { acksForContentOnly: true });
    const applied = () => ctl!.received.flatMap((m) => (m.message?.$case === "applied" ? [m.message.value] : []));
    await until(() => applied().length > 0, "an Applied");
    await driver.firstSync;
    // The rules were applied (the driver is in sync), but the host is not healthy.
    expect(driver.inSync).toBe(true);
    expect(applied()[0]).toMatchObject({ revision: 3, ok: false });
    expect(applied()[0]!.error).toContain("bridge-nf-call-iptables=0");
    expect(ctl.acks()).toEqual([]);
    h.sysctls = { "net.bridge.bridge-nf-call-iptables": "1" };
    await until(() => ctl!.acks().includes(3), "ok once fixed");
    expect(driver.hostProblem).toBeUndefined();
    expect(applied().at(-1)).toMatchObject({ revision: 3, ok: true, error: "" });
    // And back: the controller hears of it without a new revision.
    h.sysctls = undefined;
    await until(() => applied().at(-1)!.ok === false, "not ok again");
    expect(applied().at(-1)!.error).toContain("br_netfilter is not loaded");
  });

  it("an address contested on a bridge (two ports, two classes): dropped from every set, and both endpoints' status says why", async () => {
    const h = host({ tap1: true, tap2: true }, ON);
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up",
      readHost: h, interfacePollMs: 20, rulesetMonitor: false });
    await until(() => ctl!.connected(), "connected");
    const c1 = "pal4ic_aaaaaaaaaaaaaaaaaaaa";
    const c2 = "pal4ic_bbbbbbbbbbbbbbbbbbbb";
    ctl.send(3, [...SNAPSHOT,
      { type: "ipset-update", name: c1, family: 4, members: ["10.0.0.1,tap1", "10.0.0.2,tap1"] },
      { type: "ipset-update", name: c2, family: 4, members: ["10.0.0.1,tap2"] },
      { type: "endpoint-update", key: "hv1/o/w1/e", interfaceName: "tap1" },
      { type: "endpoint-update", key: "hv1/o/w2/e", interfaceName: "tap2" },
    ], true, { acksForContentOnly: true });
    await driver.firstSync;
    expect([...k.sets.get(c1)!.members].sort()).toEqual(["10.0.0.1,tap1", "10.0.0.2,br0", "10.0.0.2,tap1"]);
    expect([...k.sets.get(c2)!.members]).toEqual(["10.0.0.1,tap2"]);
    expect([...k.sets.get("pal4b-tap1")!.members].sort()).toEqual(["10.0.0.1", "10.0.0.2"]);
    const status = (key: string) => ctl!.received.flatMap((m) => (m.message?.$case === "endpointStatus" && m.message.value.endpointKey === key ? [m.message.value] : [])).at(-1);
    // Each endpoint's status comes with its own poll: wait for both.
    await until(() => /10\.0\.0\.1 is also claimed on bridge br0 by tap2/.test(status("hv1/o/w1/e")?.detail ?? ""), "w1's status");
    await until(() => /10\.0\.0\.1 is also claimed on bridge br0 by tap1/.test(status("hv1/o/w2/e")?.detail ?? ""), "w2's status");
    expect(status("hv1/o/w2/e")!.detail).toMatch(/10\.0\.0\.1 is also claimed on bridge br0 by tap1/);
  });

  it("physdev rules, the port guard and per-port sets exist only while br_netfilter is present (a physdev rule would load it)", async () => {
    const h = host({ tap1: true }, undefined);
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up",
      readHost: h, interfacePollMs: 20, rulesetMonitor: false });
    await until(() => ctl!.connected(), "connected");
    ctl.send(3, SNAPSHOT, true, { acksForContentOnly: true });
    await driver.firstSync;
    const physdevRules = () => (k.save(4).match(/physdev/g) ?? []).length;
    expect(physdevRules()).toBe(0);
    expect(k.chain(4, "pal-bgf")).toBeUndefined();
    expect(k.sets.has("pal4b-tap1")).toBe(false);
    // br_netfilter appears: the driver follows (polled).
    h.sysctls = ON;
    await until(() => k.chain(4, "pal-bgf") !== undefined && k.sets.has("pal4b-tap1"), "bridge chains programmed");
    expect(physdevRules()).toBeGreaterThan(0);
    expect(k.chain(4, "pal-bgf")!.some((r) => r.includes("-m physdev --physdev-in tap1 -m set --match-set pal4b-tap1 src -j RETURN"))).toBe(true);
    // ... and goes again: everything of it is removed.
    h.sysctls = undefined;
    await until(() => k.chain(4, "pal-bgf") === undefined && !k.sets.has("pal4b-tap1"), "bridge chains removed");
    expect(physdevRules()).toBe(0);
  });
});
