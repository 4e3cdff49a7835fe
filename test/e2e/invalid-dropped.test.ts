// Stateful promise, second half: packets conntrack classifies INVALID are
// dropped even where policy allows everything. A bare TCP ACK (no such
// connection) is crafted with a raw socket; with strict TCP tracking on the
// hypervisor (nf_conntrack_tcp_loose=0) conntrack calls it INVALID. Whether
// it reached the destination shows in the destination's TCP OutRsts counter
// (it answers an unknown ACK with a RST).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const CRAFT = `
import socket, struct, sys, random
src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
for _ in range(3):
    tcp = struct.pack("!HHIIHHHH", random.randint(20000, 30000), dport, random.getrandbits(32), random.getrandbits(32), (5 << 12) | 0x10, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.sendto(tcp, (dst, 0))
`;

let lab: Lab;
let t: Awaited<ReturnType<typeof startTestController>>;
const dir = mkdtempSync(join(tmpdir(), "palisade-invalid-"));

async function outRsts(ns: string): Promise<number> {
  const snmp = (await lab.exec(ns, "cat", ["/proc/net/snmp"])).split("\n").filter((l) => l.startsWith("Tcp:"));
  const [names, values] = snmp.map((l) => l.split(/\s+/));
  return Number(values![names!.indexOf("OutRsts")]);
}

async function sendBareAck(): Promise<number> {
  const a = lab.workloads.get("a")!, b = lab.workloads.get("b")!;
  const before = await outRsts(a.ns);
  await lab.exec(b.ns, "python3", ["-c", CRAFT, b.ipv4, a.ipv4, "80"]);
  await new Promise((r) => setTimeout(r, 300));
  return (await outRsts(a.ns)) - before;
}

describe("invalid packets are dropped", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("iv")}-`);
    const hv = await lab.addHypervisor("hv1");
    await lab.addWorkload("hv1", { name: "a", iface: "tapiva", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapivb", host: 11 });
    await lab.listen("a", [80]);
    // Strict TCP tracking: a mid-stream packet without a connection is INVALID.
    await lab.exec(hv.ns, "sysctl", ["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]).catch(async () => {
      await lab.exec(hv.ns, "iptables", ["-t", "raw", "-S"]); // loads conntrack
      await lab.exec(hv.ns, "sysctl", ["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]);
    });
  });
  afterAll(async () => {
    await lab?.destroy();
    await t?.stop();
  });

  it("without Palisade the crafted ACK reaches the destination (the check can fail)", async () => {
    expect(await sendBareAck()).toBeGreaterThan(0);
  });

  it("with Palisade it is dropped, although policy allows everything; a real connection still opens", async () => {
    t = await startTestController({ socket: join(dir, "ctl.sock") });
    const hv = lab.hypervisors.get("hv1")!;
    lab.spawnIn(hv.ns, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", "hv1"], { logFile: join(dir, "driver.log") });
    const w = lab.workloads;
    const rev = (await call(t.clients.policy, t.clients.policy.apply, { deletes: [],
      documents: parseDocuments([
        { kind: "Profile", id: "all", tags: [], inbound_rules: [{}], outbound_rules: [{}] },
        { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "a", id: "e", name: "tapiva", state: "active", ipv4_nets: [w.get("a")!.ipv4], profile_ids: ["all"] },
        { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "b", id: "e", name: "tapivb", state: "active", ipv4_nets: [w.get("b")!.ipv4], profile_ids: ["all"] },
      ]).map(documentToPb),
    })).revision;
    await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      return s.hosts.some((h) => h.hostname === "hv1" && h.inSync && h.appliedRevision >= rev);
    }, { what: "driver applied" });
    expect(await lab.probeTcp("b", "a", 80)).toBe("open");
    expect(await sendBareAck()).toBe(0);
  });
});
