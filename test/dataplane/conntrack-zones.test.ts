// Conntrack zones per bridge (DESIGN §6.13), with real packets: one
// hypervisor namespace, two Linux bridges (two tenant networks) whose
// workloads use the same addresses, bridge-nf-call-ip(6)tables=1. The
// driver's own code finds the bridges (readBridgeZones over the namespace's
// sysfs), renders the raw chain (renderZoneChains) and programs it with its
// dataplane (iptables-restore with a raw and a filter section). The filter
// chains are this test's: they admit what a* start and, back to a*, only
// replies (ctstate) — so a packet counts as a reply only if conntrack
// files it with a*'s connection.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDataplane, type Dataplane } from "../../services/driver/apply/dataplane.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { readBridgedPorts } from "../../services/driver/monitors/bridge-check.js";
import { readBridgeZones, type BridgeReader } from "../../services/driver/monitors/bridge-zones.js";
import { renderZoneChains, type BridgeZone } from "../../services/driver/plan/zone-chains.js";
import { keyOf, type ChainDef } from "../../services/contract/host-update.js";
import type { PlanInput } from "../../services/driver/plan/plan.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createLab, type Lab } from "../lab/lab.js";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../../services/runtime/package-root.js";
import { requireBuild, uniqueName } from "../support/binaries.js";

let lab: Lab;
let hv: string;

/** The namespace's sysfs, read from inside it (`ip netns exec` mounts the namespace's /sys). */
function nsReader(ns: string): BridgeReader {
  const sh = async (script: string, arg: string) => (await lab.exec(ns, "sh", ["-c", script, "sh", arg]).catch(() => "")).trim();
  return {
    interfaces: async () => (await sh("ls /sys/class/net", "")).split(/\s+/).filter(Boolean),
    bridgeOf: async (n) => (await sh('basename "$(readlink /sys/class/net/$1/brport/bridge)" 2>/dev/null || true', n)) || undefined,
    ifindex: async (n) => { const v = await sh("cat /sys/class/net/$1/ifindex", n); return v ? Number(v) : undefined; },
  };
}

function filterChains(family: 4 | 6): ChainDef[] {
  const a = family === 4 ? "10.77.0.10" : "fd77::a";
  return [
    { table: "filter", family, name: "pal-FORWARD", rules: ["-m conntrack --ctstate INVALID -j DROP", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", `-s ${a} -j ACCEPT`,
      // Neighbour discovery across the bridge (ARP is not IP: it never gets here).
      ...(family === 6 ? ["-p icmpv6 -j ACCEPT"] : []), "-m physdev --physdev-in tapz+ -j DROP"] },
    { table: "filter", family, name: "pal-INPUT", rules: [] },
  ];
}

function input(zones: readonly BridgeZone[]): PlanInput {
  const chains = [4, 6].flatMap((f) => [...filterChains(f as 4 | 6), ...renderZoneChains(zones, f as 4 | 6)]);
  return { chains: new Map(chains.map((c) => [keyOf(c), c])), sets: new Map(), families: [4, 6], removeUnwanted: true };
}

async function conntrack(family: 4 | 6, dport: number): Promise<string[]> {
  const out = await lab.exec(hv, "conntrack", ["-L", "-f", family === 4 ? "ipv4" : "ipv6", "-p", "udp", "--dport", String(dport)]).catch(() => "");
  return out.split("\n").filter((l) => l.startsWith("udp"));
}

const flush = () => lab.exec(hv, "conntrack", ["-F"]).catch(() => "");

describe("conntrack zones per bridge: identical 5-tuples on two bridges are tracked apart", () => {
  let zones: BridgeZone[] = [];
  beforeAll(async () => {
    lab = createLab(`${uniqueName("cz")}-`);
    hv = (await lab.addHypervisor("hv1")).ns;
    for (const br of ["brza", "brzb"]) await lab.addBridge("hv1", br, { bridgeNf: true });
    // Same addresses on both bridges: a* 10.77.0.10 / fd77::a, b* .11 / fd77::b.
    await lab.addBridgedWorkload("hv1", { name: "a1", iface: "tapza1", bridge: "brza", host: 10 });
    await lab.addBridgedWorkload("hv1", { name: "b1", iface: "tapzb1", bridge: "brza", host: 11 });
    await lab.addBridgedWorkload("hv1", { name: "a2", iface: "tapza2", bridge: "brzb", host: 10 });
    await lab.addBridgedWorkload("hv1", { name: "b2", iface: "tapzb2", bridge: "brzb", host: 11 });
    // UDP echo where a probe needs an answer, and never on a port that the
    // same workload sends from (its probe binds that port).
    await lab.listen("b1", [6000, 6001]);
    await lab.listen("b2", [6001]);
    await lab.listen("a2", [5000]);
    zones = (await readBridgeZones(await readBridgedPorts(["tapz"], nsReader(hv)), nsReader(hv))).zones;
  }, 90_000);
  afterAll(async () => {
    await lab?.destroy();
  });

  it("the driver finds both bridges and zones them by ifindex (its own sysfs reader, run inside the namespace)", async () => {
    requireBuild();
    const idx = async (b: string) => Number((await lab.exec(hv, "cat", [`/sys/class/net/${b}/ifindex`])).trim());
    const want = [{ bridge: "brza", zone: await idx("brza") }, { bridge: "brzb", zone: await idx("brzb") }];
    const mod = pathToFileURL(join(packageRoot(), "dist/services/driver/monitors/bridge-zones.js")).href;
    const check = pathToFileURL(join(packageRoot(), "dist/services/driver/monitors/bridge-check.js")).href;
    const out = await lab.exec(hv, process.execPath, ["--input-type=module", "-e",
      `const m = await import(${JSON.stringify(mod)}); const c = await import(${JSON.stringify(check)}); ` +
      `console.log(JSON.stringify(await m.readBridgeZones(await c.readBridgedPorts(["tapz"], c.procHostReader), m.sysfsBridgeReader)));`]);
    expect(JSON.parse(out)).toEqual({ zones: want });
    expect(zones).toEqual(want);
  });

  // Each backend in turn, each test ending with the kernel as the next expects (cleanup last).
  for (const backend of ["nft", "legacy"] as const) describe(`${backend} backend`, () => {
    let dp: Dataplane;
    beforeAll(() => {
      dp = createDataplane({ runner: createExecRunner({ netns: hv }), backend, families: [4, 6], logger: createLogger({ name: "t", level: "silent" }) });
    });

    // The control: without zones, b2's packet is taken for the reply of a1's
    // flow on the other bridge and admitted (what the zones are for).
    it("without zones, a flow on one bridge admits the same 5-tuple's reply on the other", async () => {
      await dp.apply(input([]));
      await flush();
      expect(await lab.probeMany("a1", [{ proto: "udp", dst: "10.77.0.11", port: 6000, srcPort: 5000 }])).toEqual(["open"]);
      expect(await lab.probeMany("b2", [{ proto: "udp", dst: "10.77.0.10", port: 5000, srcPort: 6000 }])).toEqual(["open"]);
    });

    it("with zones: two entries in two zones for one 5-tuple (IPv4 and IPv6), and no reply across bridges", async () => {
      await dp.apply(input(zones));
      const raw = await lab.exec(hv, `iptables-${backend}-save`, ["-t", "raw"]);
      expect(raw).toMatch(/-A PREROUTING .*-j pal-PREROUTING/);
      expect(raw).toMatch(new RegExp(`-A pal-PREROUTING -i brza .*-j CT --zone ${zones[0]!.zone}\\b`));
      await flush();
      for (const [family, b] of [[4, "10.77.0.11"], [6, "fd77::b"]] as const) {
        // a1 and a2 send the very same 5-tuple, each on its own bridge.
        expect(await lab.probeMany("a1", [{ proto: "udp", dst: b, port: 6001, srcPort: 5001 }])).toEqual(["open"]);
        expect(await lab.probeMany("a2", [{ proto: "udp", dst: b, port: 6001, srcPort: 5001 }])).toEqual(["open"]);
        const entries = await conntrack(family, 6001);
        expect(entries.length, entries.join("\n")).toBe(2);
        const zs = entries.map((l) => Number(/zone=(\d+)/.exec(l)?.[1])).sort((x, y) => x - y);
        expect(zs).toEqual(zones.map((z) => z.zone));
      }
      // a1's flow only (its echo coming back is a reply on its own bridge:
      // admitted), then b2 sends that reply's tuple on the other bridge: new
      // in its zone, not from a*, dropped.
      await flush();
      expect(await lab.probeMany("a1", [{ proto: "udp", dst: "10.77.0.11", port: 6000, srcPort: 5000 }])).toEqual(["open"]);
      expect(await lab.probeMany("b2", [{ proto: "udp", dst: "10.77.0.10", port: 5000, srcPort: 6000 }])).toEqual(["timeout"]);
    });

    it("the raw chain and its hook are drift-repaired and cleaned up like filter's", async () => {
      await dp.apply(input(zones));
      expect(await dp.detectDrift()).toBe(false);
      await lab.exec(hv, `iptables-${backend}`, ["-t", "raw", "-F", "pal-PREROUTING"]);
      expect(await dp.detectDrift()).toBe(true);
      await dp.apply(input(zones));
      expect(await lab.exec(hv, `iptables-${backend}-save`, ["-t", "raw"])).toMatch(/-A pal-PREROUTING -i brzb .*-j CT --zone/);
      await lab.exec(hv, `ip6tables-${backend}`, ["-t", "raw", "-D", "PREROUTING", "1"]);
      expect(await dp.detectDrift()).toBe(true);
      await dp.apply(input(zones));
      expect(await lab.exec(hv, `ip6tables-${backend}-save`, ["-t", "raw"])).toMatch(/-A PREROUTING .*-j pal-PREROUTING/);
      expect(await dp.detectDrift()).toBe(false);
      await dp.cleanup();
      for (const cmd of [`iptables-${backend}-save`, `ip6tables-${backend}-save`]) expect(await lab.exec(hv, cmd, ["-t", "raw"])).not.toContain("pal-");
    });
  });
});
