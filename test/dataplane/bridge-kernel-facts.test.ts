// What the kernel does with bridged frames (DESIGN §6.3, issue #20), pinned
// with real packets so that the design's claims stay measured facts: a
// hypervisor namespace with a Linux bridge and bridge-nf-call-iptables=1,
// three VM namespaces on one subnet, counting rules in a chain hooked from
// FORWARD. A newer kernel or iptables that changes one of these fails here,
// and DESIGN §6.3 (and the classification of bridged ports) must follow.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLab, type Lab } from "../lab/lab.js";
import { uniqueName } from "../support/binaries.js";

let lab: Lab;
let hv: string;

const RULES = {
  routedIn: "-i tapfa",
  bridgeIn: "-i brfact",
  physdevIn: "-m physdev --physdev-in tapf+ --physdev-is-bridged",
  physdevOut: "-m physdev --physdev-out tapfb --physdev-is-bridged",
  // `ipset add S ADDR,physdev:tapfa` is accepted, but the set match cannot look it up.
  physdevMember: "-m physdev --physdev-in tapfa -m set --match-set pbrf-pd src,src",
  physdevMemberDst: "-m physdev --physdev-out tapfb --physdev-is-bridged -m set --match-set pbrf-pdd dst,dst",
  // A member naming the bridge matches: the lookup uses -i/-o, the bridge.
  bridgeMember: "-m physdev --physdev-in tapfa -m set --match-set pbrf-br src,src",
  // The neighbour on the same bridge, sending with a's address, matches it too.
  bridgeMemberSpoof: "-m physdev --physdev-in tapfc -m set --match-set pbrf-br src,src",
  // The IPv4 MAC set matches bridged frames and tells the neighbour apart.
  macOwner: "-m physdev --physdev-in tapfa -m set --match-set pbrf-mac src,src",
  macSpoof: "-m physdev --physdev-in tapfc -m set --match-set pbrf-mac src,src",
};

async function counts(): Promise<Record<keyof typeof RULES, number>> {
  const out = await lab.exec(hv, "iptables", ["-w", "-vnxL", "pbrf", "--line-numbers"]);
  const pkts = out.split("\n").slice(2).filter((l) => l.trim()).map((l) => Number(l.trim().split(/\s+/)[1]));
  return Object.fromEntries(Object.keys(RULES).map((k, i) => [k, pkts[i]!])) as Record<keyof typeof RULES, number>;
}

describe("bridged frames, as the kernel sees them (iptables, ipset)", () => {
  beforeAll(async () => {
    lab = createLab(`${uniqueName("bk")}-`);
    hv = (await lab.addHypervisor("hv1")).ns;
    await lab.addBridge("hv1", "brfact", { bridgeNf: true });
    const a = await lab.addBridgedWorkload("hv1", { name: "a", iface: "tapfa", bridge: "brfact", host: 10, mac: "02:00:00:00:0f:0a" });
    await lab.addBridgedWorkload("hv1", { name: "b", iface: "tapfb", bridge: "brfact", host: 11, mac: "02:00:00:00:0f:0b" });
    const c = await lab.addBridgedWorkload("hv1", { name: "c", iface: "tapfc", bridge: "brfact", host: 12, mac: "02:00:00:00:0f:0c" });
    await lab.exec(hv, "ipset", ["restore"], [
      "create pbrf-pd hash:net,iface", `add pbrf-pd ${a.ipv4},physdev:tapfa`,
      "create pbrf-pdd hash:net,iface", "add pbrf-pdd 10.77.0.11,physdev:tapfb",
      "create pbrf-br hash:net,iface", `add pbrf-br ${a.ipv4},brfact`,
      "create pbrf-mac bitmap:ip,mac range 10.77.0.0/16", `add pbrf-mac ${a.ipv4},${a.mac}`, "",
    ].join("\n"));
    await lab.exec(hv, "iptables-restore", ["-w", "--noflush"], ["*filter", ":pbrf - [0:0]", "-A FORWARD -j pbrf",
      ...Object.values(RULES).map((r) => `-A pbrf ${r}`), "COMMIT", ""].join("\n"));
    // c also claims a's address (the spoofing neighbour).
    await lab.exec(c.ns, "ip", ["addr", "add", `${a.ipv4}/32`, "dev", "eth0"]);
  }, 60_000);
  afterAll(async () => {
    await lab?.destroy();
  });

  it("a's and c's pings to b (c from a's address) count where DESIGN §6.3 says", async () => {
    await lab.exec(lab.workloads.get("a")!.ns, "ping", ["-c2", "-W1", "10.77.0.11"]).catch(() => "");
    await lab.exec(lab.workloads.get("c")!.ns, "ping", ["-c2", "-W1", "-I", "10.77.0.10", "10.77.0.11"]).catch(() => "");
    const n = await counts();
    expect(n.routedIn).toBe(0); // -i tap never sees a bridged frame
    expect(n.bridgeIn).toBeGreaterThanOrEqual(4); // the bridge is -i
    expect(n.physdevIn).toBeGreaterThanOrEqual(4);
    expect(n.physdevOut).toBeGreaterThanOrEqual(4);
    expect(n.physdevMember).toBe(0);
    expect(n.physdevMemberDst).toBe(0);
    expect(n.bridgeMember).toBe(2);
    expect(n.bridgeMemberSpoof).toBe(2);
    expect(n.macOwner).toBe(2);
    expect(n.macSpoof).toBe(0);
  });
});
