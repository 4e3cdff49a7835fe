// The namespace lab: hypervisors and workloads as network namespaces, joined
// by veth pairs, for the quickstart and the tests. Only namespaces it created
// are touched (every name carries the lab's prefix); destroy() removes them.
//
// Topology (routed, like a Calico host):
//   workload ns: eth0 with a /32 (and /128), default route via a static
//                neighbour on the hypervisor side of the veth
//   hypervisor ns: tapXXXX (the veth peer), host route to the workload,
//                forwarding on; hypervisors joined by a routed link
//                198.18.0.<4k+1>/30 + 2001:db8:ffff:<k>::/64
// Addresses: 198.18.<hv>.0/24 and 2001:db8:<hv>::/64 per hypervisor — the
// benchmarking and documentation ranges, never a real network.
//
// Topology "bridged" (createLab(prefix, { topology: "bridged" }); Neutron's
// linuxbridge agent, or OVS's hybrid plug): the same workloads, names and
// addresses, but every tap is a port of one Linux bridge per hypervisor
// (LAB_BRIDGE) with bridge-nf-call-ip(6)tables=1, and link() also joins the
// two hypervisors' bridges by a veth "trunk" (a port of both, standing in
// for the VXLAN/VLAN port of a tenant network): one L2 network across hosts,
// so workload-to-workload traffic is bridged, never routed by a hypervisor,
// as on a real bridged cloud. Workloads keep their /32 and /128 and reach
// 198.18.0.0/16 and 2001:db8::/32 on-link (ARP/ND across the bridges).
// hostAddress() puts a hypervisor's own address where its workloads reach
// it (lo when routed, the bridge when bridged: IPv6 neighbour discovery
// answers only for the interface's own addresses). Live migration
// (addReplica, moveWorkload) is routed only.
import { execa } from "execa";

export interface Workload {
  name: string;
  ns: string;
  hypervisor: string;
  iface: string;
  ipv4: string;
  ipv6: string;
  mac: string;
}

export interface Hypervisor {
  name: string;
  ns: string;
  index: number;
}

export type ProbeResult = "open" | "refused" | "timeout" | "error";

export type LabTopology = "routed" | "bridged";
/** The bridge of every hypervisor in the bridged topology (a linuxbridge-style brq… name). */
export const LAB_BRIDGE = "brqlab";

async function ip(args: string[]): Promise<void> {
  await execa("ip", args);
}

function macFor(seed: number, kind: number): string {
  const b = [0x02, kind, (seed >> 16) & 0xff, (seed >> 8) & 0xff, seed & 0xff, 0x01];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export function createLab(prefix: string, opts: { topology?: LabTopology } = {}) {
  if (!/^[a-z0-9-]{1,20}$/.test(prefix)) throw new Error(`bad lab prefix ${prefix}`);
  const topology: LabTopology = opts.topology ?? "routed";
  const hypervisors = new Map<string, Hypervisor>();
  const workloads = new Map<string, Workload>();
  const namespaces: string[] = [];
  const processes = new Set<{ pid?: number; kill(sig?: NodeJS.Signals): boolean }>();
  let links = 0;
  /** "a>b": b's addresses on the link from a to b (a's next hop to b). */
  const nextHop = new Map<string, { v4: string; v6: string }>();
  /** Replicas (a workload's copy on another hypervisor: live migration), by name. */
  const replicas = new Map<string, { of: string; ns: string; hypervisor: string; iface: string }>();
  let wlCount = 0;

  async function addNamespace(name: string): Promise<string> {
    const ns = `${prefix}${name}`;
    await ip(["netns", "add", ns]);
    namespaces.push(ns);
    // No duplicate address detection: addresses (link-local ones too) are
    // usable at once, so neighbour discovery across a fresh link cannot drop
    // the first packets.
    await execa("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"]);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  async function sysctl(ns: string, kv: string): Promise<void> {
    await execa("ip", ["netns", "exec", ns, "sysctl", "-qw", kv]);
  }

  /** TCP accept-and-close and UDP echo on every port, IPv4 and IPv6, in a namespace. */
  async function listenIn(ns: string, ports: number[]): Promise<void> {
    const code = `const net=require("net"),dg=require("dgram");let n=0;const ready=()=>{if(++n===${2 * ports.length})console.log("ready")};` +
      `for(const p of ${JSON.stringify(ports)}){net.createServer(s=>{s.on("error",()=>{});s.end("ok\\n")}).listen(p,"::",ready);` +
      `const u=dg.createSocket({type:"udp6",ipv6Only:false});u.on("error",()=>{});u.on("message",(m,r)=>u.send(m,r.port,r.address));u.bind(p,"::",ready)}`;
    const child = execa("ip", ["netns", "exec", ns, process.execPath, "-e", code], { reject: false, buffer: false, stdin: "ignore" });
    processes.add(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", (c) => reject(new Error(`listener in ${ns} exited (${c})`)));
    });
  }

  function routedOnly(what: string): void {
    if (topology !== "routed") throw new Error(`lab: ${what} needs the routed topology`);
  }

  return {
    prefix,
    topology,
    hypervisors,
    workloads,

    async addHypervisor(name: string): Promise<Hypervisor> {
      const index = hypervisors.size + 1;
      const ns = await addNamespace(name);
      await sysctl(ns, "net.ipv4.ip_forward=1");
      await sysctl(ns, "net.ipv6.conf.all.forwarding=1");
      const hv = { name, ns, index };
      hypervisors.set(name, hv);
      if (topology === "bridged") {
        await this.addBridge(name, LAB_BRIDGE, { bridgeNf: true });
        // The host's own way to its workloads (its answers to them): on-link on the bridge.
        await ip(["-n", ns, "route", "add", `198.18.${index}.0/24`, "dev", LAB_BRIDGE]);
        await ip(["-n", ns, "-6", "route", "add", `2001:db8:${index}::/64`, "dev", LAB_BRIDGE]);
      }
      return hv;
    },

    /** A routed link between two hypervisors, with routes to each other's workload ranges. */
    /** The usual two-host lab: hypervisors hv1 and hv2, routed to each other. */
    async addHypervisorPair(): Promise<[Hypervisor, Hypervisor]> {
      const pair: [Hypervisor, Hypervisor] = [await this.addHypervisor("hv1"), await this.addHypervisor("hv2")];
      await this.link("hv1", "hv2");
      return pair;
    },

    async link(a: string, b: string): Promise<void> {
      const A = hypervisors.get(a)!, B = hypervisors.get(b)!;
      const k = links++;
      const ia = `lnk${k}a`, ib = `lnk${k}b`;
      await ip(["-n", A.ns, "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", B.ns]);
      const v4 = (n: number) => `198.18.0.${4 * k + n}`;
      const v6 = (n: number) => `2001:db8:ffff:${k}::${n}`;
      await ip(["-n", A.ns, "addr", "add", `${v4(1)}/30`, "dev", ia]);
      await ip(["-n", B.ns, "addr", "add", `${v4(2)}/30`, "dev", ib]);
      await ip(["-n", A.ns, "-6", "addr", "add", `${v6(1)}/64`, "dev", ia, "nodad"]);
      await ip(["-n", B.ns, "-6", "addr", "add", `${v6(2)}/64`, "dev", ib, "nodad"]);
      await ip(["-n", A.ns, "link", "set", ia, "up"]);
      await ip(["-n", B.ns, "link", "set", ib, "up"]);
      nextHop.set(`${a}>${b}`, { v4: v4(2), v6: v6(2) });
      nextHop.set(`${b}>${a}`, { v4: v4(1), v6: v6(1) });
      await ip(["-n", A.ns, "route", "add", `198.18.${B.index}.0/24`, "via", v4(2)]);
      await ip(["-n", B.ns, "route", "add", `198.18.${A.index}.0/24`, "via", v4(1)]);
      await ip(["-n", A.ns, "-6", "route", "add", `2001:db8:${B.index}::/64`, "via", v6(2)]);
      await ip(["-n", B.ns, "-6", "route", "add", `2001:db8:${A.index}::/64`, "via", v6(1)]);
      if (topology === "bridged") {
        // The trunk: one L2 network across the two hypervisors' bridges.
        const ta = `l2k${k}a`, tb = `l2k${k}b`;
        await ip(["-n", A.ns, "link", "add", ta, "type", "veth", "peer", "name", tb, "netns", B.ns]);
        await ip(["-n", A.ns, "link", "set", ta, "master", LAB_BRIDGE]);
        await ip(["-n", B.ns, "link", "set", tb, "master", LAB_BRIDGE]);
        await ip(["-n", A.ns, "link", "set", ta, "up"]);
        await ip(["-n", B.ns, "link", "set", tb, "up"]);
      }
    },

    /** A hypervisor's own address, where its workloads reach it: lo (routed) or the bridge (bridged). */
    async hostAddress(hypervisor: string, v4: string, v6: string): Promise<void> {
      const hv = hypervisors.get(hypervisor)!;
      const dev = topology === "bridged" ? LAB_BRIDGE : "lo";
      await ip(["-n", hv.ns, "addr", "add", `${v4}/32`, "dev", dev]);
      await ip(["-n", hv.ns, "-6", "addr", "add", `${v6}/128`, "dev", dev, "nodad"]);
    },

    /** A workload namespace behind a tap-like veth on a hypervisor. */
    async addWorkload(hypervisor: string, opts: { name: string; iface: string; host: number; mac?: string }): Promise<Workload> {
      const hv = hypervisors.get(hypervisor)!;
      const ns = await addNamespace(opts.name);
      const n = ++wlCount;
      const mac = opts.mac ?? macFor(n, 0x10);
      const tapMac = macFor(n, 0xee);
      const ipv4 = `198.18.${hv.index}.${opts.host}`;
      const ipv6 = `2001:db8:${hv.index}::${opts.host.toString(16)}`;
      await ip(["-n", hv.ns, "link", "add", opts.iface, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await ip(["-n", hv.ns, "link", "set", opts.iface, "address", tapMac]);
      await ip(["-n", ns, "link", "set", "eth0", "address", mac]);
      await ip(["-n", ns, "addr", "add", `${ipv4}/32`, "dev", "eth0"]);
      await ip(["-n", ns, "-6", "addr", "add", `${ipv6}/128`, "dev", "eth0", "nodad"]);
      if (topology === "bridged") {
        await ip(["-n", hv.ns, "link", "set", opts.iface, "master", LAB_BRIDGE]);
        await ip(["-n", ns, "link", "set", "eth0", "up"]);
        await ip(["-n", hv.ns, "link", "set", opts.iface, "up"]);
        // One L2 network: every lab address on-link, found by ARP/ND across the bridges.
        await ip(["-n", ns, "route", "add", "198.18.0.0/16", "dev", "eth0"]);
        await ip(["-n", ns, "-6", "route", "add", "2001:db8::/32", "dev", "eth0"]);
        const w = { name: opts.name, ns, hypervisor, iface: opts.iface, ipv4, ipv6, mac };
        workloads.set(opts.name, w);
        return w;
      }
      await ip(["-n", ns, "link", "set", "eth0", "up"]);
      await ip(["-n", hv.ns, "link", "set", opts.iface, "up"]);
      // Static neighbours both ways: no dependence on ARP/NDP through policy.
      await ip(["-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"]);
      await ip(["-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]);
      await ip(["-n", ns, "neigh", "replace", "169.254.1.1", "lladdr", tapMac, "dev", "eth0", "nud", "permanent"]);
      await ip(["-n", ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"]);
      await ip(["-n", ns, "-6", "neigh", "replace", "fe80::1", "lladdr", tapMac, "dev", "eth0", "nud", "permanent"]);
      await ip(["-n", hv.ns, "route", "add", `${ipv4}/32`, "dev", opts.iface]);
      await ip(["-n", hv.ns, "-6", "route", "add", `${ipv6}/128`, "dev", opts.iface]);
      await ip(["-n", hv.ns, "neigh", "replace", ipv4, "lladdr", mac, "dev", opts.iface, "nud", "permanent"]);
      await ip(["-n", hv.ns, "-6", "neigh", "replace", ipv6, "lladdr", mac, "dev", opts.iface, "nud", "permanent"]);
      const w = { name: opts.name, ns, hypervisor, iface: opts.iface, ipv4, ipv6, mac };
      workloads.set(opts.name, w);
      return w;
    },

    /**
     * A Linux bridge on a hypervisor, as the linuxbridge agent (or OVS's
     * hybrid plug, through a qbr bridge) builds one per network: workload
     * taps are its ports, frames between them are bridged, not routed.
     * `bridgeNf` sets net.bridge.bridge-nf-call-ip(6)tables inside the
     * hypervisor's namespace (per namespace on the kernels we run), which
     * makes bridged IP frames cross iptables' FORWARD (DESIGN §6.3).
     */
    async addBridge(hypervisor: string, bridge: string, opts: { bridgeNf: boolean }): Promise<void> {
      const hv = hypervisors.get(hypervisor)!;
      await ip(["-n", hv.ns, "link", "add", bridge, "type", "bridge"]);
      await ip(["-n", hv.ns, "link", "set", bridge, "up"]);
      await this.setBridgeNf(hypervisor, opts.bridgeNf);
    },

    async setBridgeNf(hypervisor: string, on: boolean): Promise<void> {
      const v = on ? 1 : 0;
      await sysctl(hypervisors.get(hypervisor)!.ns, `net.bridge.bridge-nf-call-iptables=${v}`);
      await sysctl(hypervisors.get(hypervisor)!.ns, `net.bridge.bridge-nf-call-ip6tables=${v}`);
    },

    /**
     * A workload whose tap is a port of `bridge`: eth0 on 10.77.0.0/24 and
     * fd77::/64 (one L2 network), neighbours found by ARP/ND across the bridge.
     */
    async addBridgedWorkload(hypervisor: string, opts: { name: string; iface: string; bridge: string; host: number; mac?: string }): Promise<Workload> {
      const hv = hypervisors.get(hypervisor)!;
      const ns = await addNamespace(opts.name);
      const n = ++wlCount;
      const mac = opts.mac ?? macFor(n, 0x10);
      const ipv4 = `10.77.0.${opts.host}`;
      const ipv6 = `fd77::${opts.host.toString(16)}`;
      await ip(["-n", hv.ns, "link", "add", opts.iface, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await ip(["-n", hv.ns, "link", "set", opts.iface, "address", macFor(n, 0xee)]);
      await ip(["-n", hv.ns, "link", "set", opts.iface, "master", opts.bridge]);
      await ip(["-n", ns, "link", "set", "eth0", "address", mac]);
      await ip(["-n", ns, "addr", "add", `${ipv4}/24`, "dev", "eth0"]);
      await ip(["-n", ns, "-6", "addr", "add", `${ipv6}/64`, "dev", "eth0", "nodad"]);
      await ip(["-n", ns, "link", "set", "eth0", "up"]);
      await ip(["-n", hv.ns, "link", "set", opts.iface, "up"]);
      const w = { name: opts.name, ns, hypervisor, iface: opts.iface, ipv4, ipv6, mac };
      workloads.set(opts.name, w);
      return w;
    },

    /**
     * The destination of a live migration: a namespace on another
     * hypervisor with the workload's addresses and MAC behind a veth of the
     * same name — up, as libvirt plugs the destination's TAP before the
     * guest moves, but not routed to until moveWorkload. (Up from the start
     * also because a link coming up drops packets until the kernel's
     * link-watch work runs, up to a second later: a lab artefact, not a
     * policy window.) IPv4 routing only.
     */
    async addReplica(hypervisor: string, of: string, name: string): Promise<string> {
      routedOnly("addReplica");
      const hv = hypervisors.get(hypervisor)!;
      const w = workloads.get(of)!;
      const ns = await addNamespace(name);
      const tapMac = macFor(++wlCount, 0xee);
      await ip(["-n", hv.ns, "link", "add", w.iface, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await ip(["-n", hv.ns, "link", "set", w.iface, "address", tapMac]);
      await ip(["-n", ns, "link", "set", "eth0", "address", w.mac]);
      await ip(["-n", ns, "addr", "add", `${w.ipv4}/32`, "dev", "eth0"]);
      await ip(["-n", ns, "-6", "addr", "add", `${w.ipv6}/128`, "dev", "eth0", "nodad"]);
      await ip(["-n", ns, "link", "set", "eth0", "up"]);
      await ip(["-n", hv.ns, "link", "set", w.iface, "up"]);
      await ip(["-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"]);
      await ip(["-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]);
      await ip(["-n", ns, "neigh", "replace", "169.254.1.1", "lladdr", tapMac, "dev", "eth0", "nud", "permanent"]);
      replicas.set(name, { of, ns, hypervisor, iface: w.iface });
      return ns;
    },

    /**
     * The moment a live migration switches the guest over: the replica is
     * routed to on its hypervisor, the source hypervisor routes the address
     * to it over their link, and the source interface goes down — in that
     * order, as fast as `ip` allows.
     */
    async moveWorkload(replica: string): Promise<void> {
      routedOnly("moveWorkload");
      const r = replicas.get(replica)!;
      const w = workloads.get(r.of)!;
      const dst = hypervisors.get(r.hypervisor)!, src = hypervisors.get(w.hypervisor)!;
      const hop = nextHop.get(`${w.hypervisor}>${r.hypervisor}`);
      if (!hop) throw new Error(`no link from ${w.hypervisor} to ${r.hypervisor}`);
      await ip(["-n", dst.ns, "route", "replace", `${w.ipv4}/32`, "dev", r.iface]);
      await ip(["-n", dst.ns, "neigh", "replace", w.ipv4, "lladdr", w.mac, "dev", r.iface, "nud", "permanent"]);
      await ip(["-n", src.ns, "route", "replace", `${w.ipv4}/32`, "via", hop.v4]);
      await ip(["-n", src.ns, "link", "set", w.iface, "down"]);
    },

    /** Starts a TCP server in a workload accepting on the given ports (v4 and v6). */
    async listen(workload: string, ports: number[]): Promise<void> {
      await listenIn(workloads.get(workload)!.ns, ports);
    },

    /** The same in any namespace of the lab (e.g. a hypervisor itself). */
    listenIn: (ns: string, ports: number[]) => listenIn(ns, ports),

    /** One TCP connection attempt from a workload; "timeout" = silently dropped. */
    async probeTcp(from: string, to: string, port: number, opts: { family?: 4 | 6; timeoutMs?: number } = {}): Promise<ProbeResult> {
      const src = workloads.get(from)!;
      const dst = workloads.get(to);
      const host = dst ? (opts.family === 6 ? dst.ipv6 : dst.ipv4) : to;
      const code = `const s=require("net").connect({host:${JSON.stringify(host)},port:${port}});s.setTimeout(${opts.timeoutMs ?? 1500});` +
        `s.on("connect",()=>{console.log("open");s.destroy()});s.on("timeout",()=>{console.log("timeout");s.destroy()});` +
        `s.on("error",e=>console.log(e.code==="ECONNREFUSED"?"refused":"error "+e.code));`;
      const r = await execa("ip", ["netns", "exec", src.ns, process.execPath, "-e", code], { reject: false, stdin: "ignore" });
      const out = String(r.stdout).trim().split(" ")[0];
      return (["open", "refused", "timeout"].includes(out!) ? out : "error") as ProbeResult;
    },

    /**
     * Probes continuously from one process inside the workload (no per-probe
     * start-up cost): one loop per port, each connecting back to back for
     * `durationMs` (an open port is probed every few ms, so short windows
     * show), counting outcomes per port. The default timeout (900 ms) is
     * below TCP's 1 s SYN retransmission: a SYN dropped in a window always
     * ends as a timeout, while a merely slow (CPU-starved) probe does not.
     * Probes are paced (`gapMs`, 5 ms): back-to-back connections by the ten
     * thousand exhaust ephemeral ports and TIME_WAIT tuples and time out on
     * their own.
     */
    async probeLoop(from: string, to: string, ports: number[], durationMs: number, opts: {
      timeoutMs?: number; gapMs?: number;
      /** Filled with the codes of the "error" outcomes, per port (e.g. { 80: { ECONNRESET: 1 } }). */
      errorCodes?: Record<number, Record<string, number>>;
    } = {}): Promise<Record<number, Record<ProbeResult, number>>> {
      const src = workloads.get(from)!;
      const host = workloads.get(to)!.ipv4;
      const code = `const net=require("net");const ports=${JSON.stringify(ports)};const end=Date.now()+${durationMs};` +
        `const c={},codes={};for(const p of ports){c[p]={open:0,refused:0,timeout:0,error:0};codes[p]={}}` +
        `const one=p=>new Promise(r=>{const s=net.connect({host:${JSON.stringify(host)},port:p});s.setTimeout(${opts.timeoutMs ?? 900});` +
        `const done=k=>{c[p][k]++;s.destroy();r()};s.on("connect",()=>done("open"));s.on("timeout",()=>done("timeout"));` +
        `s.on("error",e=>{if(e.code!=="ECONNREFUSED")codes[p][e.code]=(codes[p][e.code]||0)+1;done(e.code==="ECONNREFUSED"?"refused":"error")})});` +
        `const gap=()=>new Promise(r=>setTimeout(r,${opts.gapMs ?? 5}));` +
        `Promise.all(ports.map(async p=>{while(Date.now()<end){await one(p);await gap()}})).then(()=>console.log(JSON.stringify({c,codes})));`;
      const r = await execa("ip", ["netns", "exec", src.ns, process.execPath, "-e", code], { reject: false, stdin: "ignore" });
      const out = JSON.parse(String(r.stdout)) as { c: Record<number, Record<ProbeResult, number>>; codes: Record<number, Record<string, number>> };
      // Which errors (other than refusals) the probes met, for the test's message.
      for (const [port, codes] of Object.entries(out.codes)) if (Object.keys(codes).length) console.log(`probe errors on port ${port}: ${JSON.stringify(codes)}`);
      if (opts.errorCodes) Object.assign(opts.errorCodes, out.codes);
      return out.c;
    },

    /**
     * Many probes at once from one workload (one process, all concurrent):
     * TCP connect, UDP echo, or ICMP echo (ping). "open" means the flow was
     * admitted (connection, echo reply); "timeout" that it was dropped.
     * A UDP probe may bind a given source port, so that it can never be
     * taken for an earlier flow still in conntrack; a TCP probe may bind a
     * given source address (anti-spoofing tests).
     */
    async probeMany(from: string, probes: { proto: "tcp" | "udp" | "icmp"; dst: string; port?: number; srcPort?: number; src?: string }[], timeoutMs = 800): Promise<ProbeResult[]> {
      const src = workloads.get(from)!;
      const code = `const net=require("net"),dg=require("dgram"),cp=require("child_process");const T=${timeoutMs};` +
        `const tcp=(h,p,la)=>new Promise(r=>{const s=net.connect({host:h,port:p,localAddress:la});s.setTimeout(T);const d=k=>{s.destroy();r(k)};` +
        `s.on("connect",()=>d("open"));s.on("timeout",()=>d("timeout"));s.on("error",e=>d(e.code==="ECONNREFUSED"?"refused":"error"))});` +
        `const udp=(h,p,sp)=>new Promise(r=>{const s=dg.createSocket(h.includes(":")?"udp6":"udp4");const t=setTimeout(()=>{s.close();r("timeout")},T);` +
        `s.on("message",()=>{clearTimeout(t);s.close();r("open")});s.on("error",()=>{clearTimeout(t);s.close();r("error")});` +
        `const go=()=>s.send("x",p,h);sp?s.bind(sp,go):go()});` +
        `const icmp=h=>new Promise(r=>cp.execFile("ping",[h.includes(":")?"-6":"-4","-c1","-n","-W",String(Math.ceil(T/1000)),h],(e)=>r(e?"timeout":"open")));` +
        `const ps=${JSON.stringify(probes)};Promise.all(ps.map(q=>q.proto==="tcp"?tcp(q.dst,q.port,q.src):q.proto==="udp"?udp(q.dst,q.port,q.srcPort):icmp(q.dst))).then(x=>console.log(JSON.stringify(x)));`;
      const r = await execa("ip", ["netns", "exec", src.ns, process.execPath, "-e", code], { reject: false, stdin: "ignore" });
      return JSON.parse(String(r.stdout)) as ProbeResult[];
    },

    /** Runs a long-lived process inside a namespace; stopped by PID on destroy(). */
    spawnIn(ns: string, cmd: string, args: string[], opts: { env?: Record<string, string>; logFile?: string } = {}) {
      const child = execa("ip", ["netns", "exec", ns, cmd, ...args], {
        // Daemons get time for their own bounded shutdown before SIGKILL.
        reject: false, env: opts.env, stdin: "ignore", forceKillAfterDelay: 8_000, stdout: opts.logFile ? { file: opts.logFile } : "ignore", stderr: opts.logFile ? { file: opts.logFile } : "ignore",
      });
      processes.add(child);
      return child;
    },

    async exec(ns: string, cmd: string, args: string[], input?: string): Promise<string> {
      const r = await execa("ip", ["netns", "exec", ns, cmd, ...args], { input });
      return String(r.stdout);
    },

    async destroy(): Promise<void> {
      for (const p of processes) p.kill("SIGKILL");
      processes.clear();
      for (const ns of namespaces.reverse()) await execa("ip", ["netns", "del", ns], { reject: false });
      namespaces.length = 0;
    },
  };
}

export type Lab = ReturnType<typeof createLab>;

/** Removes namespaces left behind by an earlier run with this prefix (after a crash). */
export async function removeStaleNamespaces(prefix: string): Promise<string[]> {
  const r = await execa("ip", ["netns", "list"], { reject: false });
  const stale = String(r.stdout).split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith(prefix));
  for (const ns of stale) await execa("ip", ["netns", "del", ns], { reject: false });
  return stale;
}
