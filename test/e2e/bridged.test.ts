// Bridged workload ports (issue #20): a hypervisor where the workloads' taps
// are ports of a Linux bridge (as the linuxbridge agent, or OVS's hybrid
// plug, builds it). With bridge-nf-call-iptables=1, bridged frames cross
// FORWARD with the bridge as -i/-o and the taps only as physdev; the driver
// translates the controller's classification to the bridge (twins) and
// checks each port's addresses itself (the per-port guard), so every
// promise made for routed taps holds on the bridge (DESIGN §6.3). With the
// sysctl off they never reach iptables: the host's status says so and the
// driver is not ready (DESIGN §9.3).
//
// The lab: one hypervisor, bridge brpal0, VMs a, b, d (endpoints), c (a tap
// without an endpoint) and s (a port without the workload prefix: the
// network's DHCP server/router, as Neutron's agents sit on the bridge).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { EndpointState } from "../../services/contract/status.js";
import { documentToPb, refToPb } from "../../services/contract/model-wire.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const READY = "127.0.0.1:9464";

/**
 * Sends IPv4 UDP in one raw Ethernet frame (AF_PACKET), so the source may be
 * 0.0.0.0 — a DHCP client before it has an address — which no UDP socket
 * of a configured interface sends.
 */
const RAW_UDP4 = `
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16; return (~s) & 0xffff
iface, smac, src, dst, sport, dport = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
payload = b'palisade-bridged-test'
udp = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
eth = b'\\xff' * 6 + bytes.fromhex(smac.replace(':', '')) + b'\\x08\\x00'
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(3): s.send(eth + ip + udp)
`;

/** Sends one ICMPv6 message of a given type to ff02::1 from the link-local address (raw socket: the kernel sums it). */
const RAW_ICMP6 = `
import socket, struct, sys
t = int(sys.argv[1]); idx = socket.if_nametoindex('eth0')
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255 if t in (133, 134, 135, 136) else 1)
body = struct.pack('!BBHHH16s', t, 0, 0, 0, 0, bytes(16)) if t in (130, 131, 132) else struct.pack('!BBHBBHII', t, 0, 0, 64, 0, 0, 0, 0)
for _ in range(3): s.sendto(body, ('ff02::1', 0, 0, idx))
`;

// Both backends: the physdev rules must be accepted, and read back without
// drift, by iptables-nft and iptables-legacy alike.
describe.each(["nft", "legacy"] as const)("bridged workload ports (%s)", (backend) => {
  let lab: Lab;
  let t: Awaited<ReturnType<typeof startTestController>>;
  let driver: ReturnType<Lab["spawnIn"]> | undefined;
  let hv: string;
  const dir = mkdtempSync(join(tmpdir(), "palisade-bridged-"));
  const ns = (w: string) => lab.workloads.get(w)!.ns;

  async function hostStatus() {
    const s = await call(t.clients.status, t.clients.status.getStatus, {});
    return s.hosts.find((h) => h.hostname === "hv1");
  }

  /** The driver's HTTP (/readyz, /metrics) inside the hypervisor's namespace: [HTTP status, body]. */
  async function http(path: string): Promise<[number, string]> {
    const code = `fetch("http://${READY}${path}").then(async r=>console.log(JSON.stringify([r.status,await r.text()])),e=>console.log(JSON.stringify([0,String(e)])))`;
    return JSON.parse(await lab.exec(hv, process.execPath, ["-e", code])) as [number, string];
  }

  function endpoint(name: string, profiles: string[], state = "active") {
    const w = lab.workloads.get(name)!;
    return { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: name, id: "e", name: w.iface, state, mac: w.mac, ipv4_nets: [`${w.ipv4}/32`], ipv6_nets: [`${w.ipv6}/128`], profile_ids: profiles };
  }

  /** Applies documents and endpoint deletions (workload names), then waits for the driver. */
  async function apply(docs: object[], deleteWorkloads: string[] = []): Promise<void> {
    const deletes = deleteWorkloads.map((workload) => ({ object: refToPb({ kind: "Endpoint", key: { host: "hv1", orchestrator: "t", workload, id: "e" } }) }));
    const rev = (await call(t.clients.policy, t.clients.policy.apply, { deletes, documents: parseDocuments(docs).map(documentToPb) })).revision;
    await eventually(async () => {
      const h = await hostStatus();
      return h && h.inSync && h.appliedRevision >= rev;
    }, { what: `driver applied revision ${rev}` });
  }

  /**
   * How many datagrams `to` receives on `port` while `send` runs (a UDP
   * socket bound to any address: broadcasts and unicasts alike).
   */
  async function received(to: string, family: 4 | 6, port: number, send: () => Promise<unknown>): Promise<number> {
    // The listener prints one line per datagram and runs until killed: the
    // window to count in starts when the sender is done, not when the
    // listener started (a sender slow to start on a busy machine, python3
    // under CI load, once took longer than a window counted from the
    // listener's start, and a datagram that arrived was reported as none).
    const code = `const s=require("dgram").createSocket({type:"udp${family}",reuseAddr:true});s.on("message",()=>console.log("rx"));` +
      `s.bind(${port},()=>console.log("bound"));`;
    const p = execa("ip", ["netns", "exec", ns(to), process.execPath, "-e", code], { reject: false, stdin: "ignore", buffer: true });
    let out = "";
    p.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    const count = () => out.split("\n").filter((l) => l === "rx").length;
    try {
      await eventually(async () => out.includes("bound"), { what: "listener bound", timeoutMs: 10_000, intervalMs: 20 });
      await send();
      // Delivery is in the sender's own system call (or the softirq just
      // after it); a second covers a starved softirq thread.
      await new Promise((r) => setTimeout(r, 1_000));
      return count();
    } finally {
      p.kill("SIGKILL");
      await p;
    }
  }

  /** UDP from a workload, from a given source port, to an address and port. */
  async function udpFrom(from: string, family: 4 | 6, sport: number, dst: string, dport: number): Promise<void> {
    const code = `const s=require("dgram").createSocket("udp${family}");s.bind(${sport},()=>{let k=0;const go=()=>s.send("x",${dport},${JSON.stringify(dst)},()=>{if(++k<3)go();else s.close()});go()});`;
    await lab.exec(ns(from), process.execPath, ["-e", code]);
  }

  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName(`br${backend[0]}`)}-`);
    hv = (await lab.addHypervisor("hv1")).ns;
    await lab.addBridge("hv1", "brpal0", { bridgeNf: true });
    await lab.addBridgedWorkload("hv1", { name: "a", iface: "tapbra", bridge: "brpal0", host: 10 });
    await lab.addBridgedWorkload("hv1", { name: "b", iface: "tapbrb", bridge: "brpal0", host: 11 });
    // A tap on the bridge without an endpoint.
    await lab.addBridgedWorkload("hv1", { name: "c", iface: "tapbrc", bridge: "brpal0", host: 12 });
    await lab.addBridgedWorkload("hv1", { name: "d", iface: "tapbrd", bridge: "brpal0", host: 13 });
    // The network's own port (DHCP server, router): no workload prefix, not policed.
    await lab.addBridgedWorkload("hv1", { name: "s", iface: "qdhcpbr", bridge: "brpal0", host: 2 });
    for (const w of ["a", "b", "c", "d"]) await lab.listen(w, [22, 80]);
  }, 90_000);
  afterAll(async () => {
    await lab?.destroy();
    await t?.stop();
  });

  it("without Palisade, b reaches a on tcp/22 over the bridge, IPv4 and IPv6 (the checks below can fail)", async () => {
    expect(await lab.probeTcp("b", "a", 22)).toBe("open");
    expect(await lab.probeTcp("b", "a", 22, { family: 6 })).toBe("open");
    expect(await lab.probeTcp("c", "a", 22)).toBe("open");
  });

  it("profiles, ordered rules and tags hold on the bridge, both directions, IPv4 and IPv6; default deny; a tap without an endpoint sends and receives nothing", async () => {
    t = await startTestController({ socket: join(dir, "ctl.sock") });
    driver = lab.spawnIn(hv, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", "hv1", "--metrics-listen", READY,
      "--iptables-backend", backend, "--drift-check-seconds", "2"], { logFile: join(dir, "driver.log") });
    await apply([
      // a: inbound tcp/80 only; outbound tcp except tcp/22 (ordered: the deny first), nothing else — not
      // even ICMPv6: its neighbour advertisements pass as Neutron lets them (DESIGN §6.3).
      // ... and tcp/22 from members of tag "admins" (d).
      { kind: "Profile", id: "web", tags: [], inbound_rules: [{ action: "allow", protocol: "tcp", dst_ports: [80] }, { action: "allow", protocol: "tcp", dst_ports: [22], src_tag: "admins" }],
        outbound_rules: [{ action: "deny", protocol: "tcp", dst_ports: [22] }, { action: "allow", protocol: "tcp" }] },
      { kind: "Profile", id: "all", tags: [], inbound_rules: [{}], outbound_rules: [{}] },
      { kind: "Profile", id: "admin", tags: ["admins"], inbound_rules: [{}], outbound_rules: [{}] },
      endpoint("a", ["web"]), endpoint("b", ["all"]), endpoint("d", ["admin"]),
    ]);
    expect((await hostStatus())!.lastError).toBe("");
    expect((await http("/readyz"))[0]).toBe(200);
    for (const family of [4, 6] as const) {
      // b -> a: b's outbound allows, a's inbound allows 80 only.
      expect(await lab.probeTcp("b", "a", 80, { family })).toBe("open");
      expect(await lab.probeTcp("b", "a", 22, { family })).toBe("timeout");
      // Tags: d is a member of "admins".
      expect(await lab.probeTcp("d", "a", 22, { family })).toBe("open");
      // a -> b: a's ordered outbound denies 22 before allowing tcp.
      expect(await lab.probeTcp("a", "b", 80, { family })).toBe("open");
      expect(await lab.probeTcp("a", "b", 22, { family })).toBe("timeout");
      // A tap without an endpoint: nothing from it, nothing to it.
      expect(await lab.probeTcp("c", "a", 80, { family })).toBe("timeout");
      expect(await lab.probeTcp("b", "c", 22, { family })).toBe("timeout");
    }
    // Bridge ports are enforced now: their endpoints are up, not errors.
    await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      const a = s.endpoints.find((e) => e.endpointKey === "hv1/t/a/e");
      return a?.state === EndpointState.ENDPOINT_STATE_UP && a.detail === "";
    }, { what: "endpoint a reported up" });
    // The read-back after the writes found the rules as written.
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_drift_repairs_total 0$/m);
  }, 90_000);

  it("anti-spoofing by address: d, a neighbour on the same bridge, cannot send with b's address (IPv4 and IPv6)", async () => {
    const [a, b, d] = ["a", "b", "d"].map((n) => lab.workloads.get(n)!);
    // a's answers to b's address go to d (its neighbour entry), so a spoofed
    // connection that got through would complete: the probe can fail.
    await lab.exec(d!.ns, "ip", ["addr", "add", `${b!.ipv4}/32`, "dev", "eth0"]);
    await lab.exec(d!.ns, "ip", ["-6", "addr", "add", `${b!.ipv6}/128`, "dev", "eth0", "nodad"]);
    await lab.exec(a!.ns, "ip", ["neigh", "replace", b!.ipv4, "lladdr", d!.mac, "dev", "eth0", "nud", "permanent"]);
    await lab.exec(a!.ns, "ip", ["-6", "neigh", "replace", b!.ipv6, "lladdr", d!.mac, "dev", "eth0", "nud", "permanent"]);
    try {
      const r = await lab.probeMany("d", [
        { proto: "tcp", dst: a!.ipv4, port: 80, src: b!.ipv4 },
        { proto: "tcp", dst: a!.ipv6, port: 80, src: b!.ipv6 },
        { proto: "tcp", dst: a!.ipv4, port: 80, src: d!.ipv4 },
        { proto: "tcp", dst: a!.ipv6, port: 80, src: d!.ipv6 },
      ], 1500);
      expect(r).toEqual(["timeout", "timeout", "open", "open"]);
    } finally {
      await lab.exec(a!.ns, "ip", ["neigh", "del", b!.ipv4, "dev", "eth0"]);
      await lab.exec(a!.ns, "ip", ["-6", "neigh", "del", b!.ipv6, "dev", "eth0"]);
      await lab.exec(d!.ns, "ip", ["addr", "del", `${b!.ipv4}/32`, "dev", "eth0"]);
      await lab.exec(d!.ns, "ip", ["-6", "addr", "del", `${b!.ipv6}/128`, "dev", "eth0"]);
    }
  }, 60_000);

  it("anti-spoofing by MAC, IPv4 and IPv6: d with another MAC is dropped, with its own again admitted", async () => {
    const [a, d] = ["a", "d"].map((n) => lab.workloads.get(n)!);
    const other = "02:00:00:00:99:99";
    await lab.exec(d!.ns, "ip", ["link", "set", "eth0", "address", other]);
    await lab.exec(a!.ns, "ip", ["neigh", "replace", d!.ipv4, "lladdr", other, "dev", "eth0", "nud", "permanent"]);
    await lab.exec(a!.ns, "ip", ["-6", "neigh", "replace", d!.ipv6, "lladdr", other, "dev", "eth0", "nud", "permanent"]);
    try {
      expect(await lab.probeTcp("d", "a", 80)).toBe("timeout");
      // IPv6: d's own address from another MAC (the controller's interface
      // tree never sees a bridged frame; the port's guard leaf checks it).
      expect(await lab.probeTcp("d", "a", 80, { family: 6 })).toBe("timeout");
    } finally {
      await lab.exec(d!.ns, "ip", ["link", "set", "eth0", "address", d!.mac]);
      await lab.exec(a!.ns, "ip", ["neigh", "del", d!.ipv4, "dev", "eth0"]);
      await lab.exec(a!.ns, "ip", ["-6", "neigh", "del", d!.ipv6, "dev", "eth0"]);
    }
    expect(await lab.probeTcp("d", "a", 80)).toBe("open");
    expect(await lab.probeTcp("d", "a", 80, { family: 6 })).toBe("open");
  }, 60_000);

  it("joining the network whatever the groups say: DHCP (also from 0.0.0.0) and DHCPv6 to the network's port, its replies back; DHCP server replies and router advertisements from a VM are dropped", async () => {
    const [a, b, s] = ["a", "b", "s"].map((n) => lab.workloads.get(n)!);
    const python = (w: string, script: string, args: string[]) => lab.exec(ns(w), "python3", ["-c", script, ...args]);
    // a's outbound allows tcp only: its DHCP client still reaches the server, from 0.0.0.0 by broadcast.
    expect(await received("s", 4, 67, () => python("a", RAW_UDP4, ["eth0", a!.mac, "0.0.0.0", "255.255.255.255", "68", "67"]))).toBeGreaterThan(0);
    // ... but only DHCP: the same datagram to another port is a's outbound's to judge (denied).
    expect(await received("s", 4, 1067, () => python("a", RAW_UDP4, ["eth0", a!.mac, "0.0.0.0", "255.255.255.255", "68", "1067"]))).toBe(0);
    // DHCPv6 client -> server.
    expect(await received("s", 6, 547, () => udpFrom("a", 6, 546, s!.ipv6, 547))).toBeGreaterThan(0);
    expect(await received("s", 6, 1547, () => udpFrom("a", 6, 546, s!.ipv6, 1547))).toBe(0);
    // The server's replies reach a, whose inbound allows tcp/80 only.
    expect(await received("a", 4, 68, () => udpFrom("s", 4, 67, a!.ipv4, 68))).toBeGreaterThan(0);
    expect(await received("a", 4, 68, () => udpFrom("s", 4, 1067, a!.ipv4, 68))).toBe(0);
    expect(await received("a", 6, 546, () => udpFrom("s", 6, 547, a!.ipv6, 546))).toBeGreaterThan(0);
    // A VM answering as a DHCP server is dropped, though its own profile and b's allow everything.
    expect(await received("b", 4, 68, () => udpFrom("d", 4, 67, b!.ipv4, 68))).toBe(0);
    expect(await received("b", 4, 68, () => udpFrom("d", 4, 1067, b!.ipv4, 68))).toBeGreaterThan(0);
    expect(await received("b", 6, 546, () => udpFrom("d", 6, 547, b!.ipv6, 546))).toBe(0);
    // Router advertisements from a VM are dropped; MLD from its link-local address passes.
    const counter = async (type: number) => {
      const out = await lab.exec(b!.ns, "ip6tables", ["-w", "-vnxL", "INPUT"]);
      return out.split("\n").filter((l) => l.includes(`ipv6-icmptype ${type}`)).map((l) => Number(l.trim().split(/\s+/)[0]))[0] ?? -1;
    };
    for (const type of [134, 130]) await lab.exec(b!.ns, "ip6tables", ["-w", "-A", "INPUT", "-p", "icmpv6", "-m", "icmp6", "--icmpv6-type", String(type)]);
    await python("d", RAW_ICMP6, ["134"]);
    await python("d", RAW_ICMP6, ["130"]);
    await new Promise((r) => setTimeout(r, 300));
    expect(await counter(130)).toBeGreaterThan(0);
    expect(await counter(134)).toBe(0);
  }, 60_000);

  it("fail closed: an inactive endpoint, and one removed, send and receive nothing; active again, it does", async () => {
    const both = async () => [await lab.probeTcp("d", "b", 22), await lab.probeTcp("b", "d", 22, { family: 6 })];
    expect(await both()).toEqual(["open", "open"]);
    await apply([endpoint("d", ["admin"], "inactive")]);
    expect(await both()).toEqual(["timeout", "timeout"]);
    await apply([], ["d"]);
    expect(await both()).toEqual(["timeout", "timeout"]);
    await apply([endpoint("d", ["admin"])]);
    expect(await both()).toEqual(["open", "open"]);
  }, 60_000);

  it("drift: a flushed guard chain and a removed per-port member are repaired", async () => {
    const save = async () => (await lab.exec(hv, backend === "nft" ? "iptables-nft-save" : "iptables-legacy-save", ["-t", "filter"]))
      .split("\n").filter((l) => l.startsWith("-A pal-bgf")).join("\n");
    const before = await save();
    expect(before).toContain("--physdev-in tapbra -m set --match-set pal4b-tapbra src");
    await lab.exec(hv, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-w", "-F", "pal-bgf"]);
    await lab.exec(hv, "ipset", ["del", "pal4b-tapbrb", lab.workloads.get("b")!.ipv4]);
    await eventually(async () => (await save()) === before && (await lab.exec(hv, "ipset", ["list", "pal4b-tapbrb"])).includes(lab.workloads.get("b")!.ipv4),
      { what: "guard repaired", timeoutMs: 20_000 });
    expect(await lab.probeTcp("b", "a", 80)).toBe("open");
    expect(Number(/^palisade_driver_drift_repairs_total (\d+)$/m.exec((await http("/metrics"))[1])?.[1])).toBeGreaterThan(0);
  }, 60_000);

  it("with bridge-nf-call-iptables=0, the host's status carries the error and the driver is not ready; both clear when it is set again", async () => {
    await lab.setBridgeNf("hv1", false);
    const h = await eventually(async () => {
      const h = await hostStatus();
      return h?.lastError.includes("bridge-nf-call-iptables") ? h : undefined;
    }, { what: "host status names the sysctl" });
    expect(h!.lastError).toMatch(/NOT policed: tapbra, tapbrb, tapbrc, tapbrd are bridge ports/);
    const [code, body] = await http("/readyz");
    expect(code).toBe(503);
    expect(body).toContain("bridge-nf-call-iptables=0");
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_host_check_failing 1$/m);
    await lab.setBridgeNf("hv1", true);
    await eventually(async () => (await hostStatus())?.lastError === "", { what: "error cleared" });
    expect((await http("/readyz"))[0]).toBe(200);
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_host_check_failing 0$/m);
  }, 60_000);

  it("adoption: a driver restart keeps the bridge enforced while it is away and after it is back, with nothing rewritten", async () => {
    driver!.kill("SIGTERM");
    await driver;
    const check = async () => [await lab.probeTcp("b", "a", 80), await lab.probeTcp("b", "a", 22), await lab.probeTcp("b", "a", 80, { family: 6 }), await lab.probeTcp("c", "a", 80)];
    expect(await check()).toEqual(["open", "timeout", "open", "timeout"]);
    const before = (await http("/metrics"))[0];
    expect(before).toBe(0); // no driver
    driver = lab.spawnIn(hv, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", "hv1", "--metrics-listen", READY,
      "--iptables-backend", backend, "--drift-check-seconds", "2"], { logFile: join(dir, "driver2.log") });
    await eventually(async () => (await http("/readyz"))[0] === 200, { what: "restarted driver ready" });
    expect(await check()).toEqual(["open", "timeout", "open", "timeout"]);
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_drift_repairs_total 0$/m);
  }, 60_000);

  it("cleanup removes every chain, hook and set of ours, the bridge ones included", async () => {
    driver!.kill("SIGTERM");
    await driver;
    await lab.exec(hv, process.execPath, [BIN.driver, "--cleanup", "--iptables-backend", backend]);
    const tool = backend === "nft" ? "nft" : "legacy";
    for (const save of [`iptables-${tool}-save`, `ip6tables-${tool}-save`]) expect(await lab.exec(hv, save, [])).not.toMatch(/pal/);
    expect(await lab.exec(hv, "ipset", ["list", "-n"])).not.toMatch(/^pal/m);
  }, 60_000);
});
