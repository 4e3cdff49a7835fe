// The lab's bridged topology (test/lab/lab.ts), without Palisade: what the
// packet, differential and flow tests rely on when they run on it. Workloads
// on two hypervisors reach each other over one L2 network — bridged at both
// ends, so FORWARD sees each workload's tap as physdev, never routed by a
// hypervisor — on both families, and a hypervisor's own address is
// reachable from its workloads (through INPUT, the tap again as physdev).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLab, LAB_BRIDGE, type Lab } from "../lab/lab.js";
import { uniqueName } from "../support/binaries.js";

let lab: Lab;

async function count(ns: string, cmd: string, chain: string): Promise<number[]> {
  const out = await lab.exec(ns, cmd, ["-w", "-vnxL", chain]);
  return out.split("\n").slice(2).filter((l) => l.trim()).map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe("the lab's bridged topology", () => {
  beforeAll(async () => {
    lab = createLab(`${uniqueName("lb")}-`, { topology: "bridged" });
    await lab.addHypervisorPair();
    await lab.addWorkload("hv1", { name: "a", iface: "tapla", host: 10 });
    await lab.addWorkload("hv2", { name: "x", iface: "taplx", host: 20 });
    await lab.hostAddress("hv1", "198.18.1.1", "2001:db8:1::1");
    for (const hv of ["hv1", "hv2"]) {
      const ns = lab.hypervisors.get(hv)!.ns;
      for (const cmd of ["iptables", "ip6tables"]) {
        // Counting rules: bridged (tap to trunk or trunk to tap) vs routed.
        await lab.exec(ns, cmd, ["-w", "-A", "FORWARD", "-m", "physdev", "--physdev-in", "tapl+", "--physdev-is-bridged"]);
        await lab.exec(ns, cmd, ["-w", "-A", "FORWARD", "-m", "physdev", "--physdev-out", "tapl+", "--physdev-is-bridged"]);
        await lab.exec(ns, cmd, ["-w", "-A", "FORWARD", "-i", "lnk+"]);
        await lab.exec(ns, cmd, ["-w", "-A", "INPUT", "-i", LAB_BRIDGE, "-m", "physdev", "--physdev-in", "tapl+"]);
      }
    }
  }, 60_000);
  afterAll(async () => {
    await lab?.destroy();
  });

  it("workload to workload across hypervisors is bridged at both ends, both families; the host address answers through INPUT", async () => {
    const a = lab.workloads.get("a")!;
    const x = lab.workloads.get("x")!;
    await lab.exec(a.ns, "ping", ["-c1", "-W2", x.ipv4]);
    await lab.exec(a.ns, "ping", ["-6", "-c1", "-W2", x.ipv6]);
    await lab.exec(a.ns, "ping", ["-c1", "-W2", "198.18.1.1"]);
    await lab.exec(a.ns, "ping", ["-6", "-c1", "-W2", "2001:db8:1::1"]);
    for (const cmd of ["iptables", "ip6tables"]) {
      const [fromA, toA, routed1] = await count(lab.hypervisors.get("hv1")!.ns, cmd, "FORWARD");
      const [fromX, toX, routed2] = await count(lab.hypervisors.get("hv2")!.ns, cmd, "FORWARD");
      expect({ cmd, fromA, toA, fromX, toX, routed: routed1! + routed2! }).toMatchObject({ cmd, routed: 0 });
      expect(Math.min(fromA!, toA!, fromX!, toX!)).toBeGreaterThanOrEqual(1);
      const [input] = await count(lab.hypervisors.get("hv1")!.ns, cmd, "INPUT");
      expect(input).toBeGreaterThanOrEqual(1);
    }
  });

  it("live migration is refused on it (routed only)", async () => {
    await expect(lab.addReplica("hv2", "a", "a2")).rejects.toThrow(/routed topology/);
  });
});
