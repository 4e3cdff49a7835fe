// Flow reports, the pure parts (DESIGN §6.12): report points in the
// rendering, prefixes, the pcap/NFLOG parser, IP header parsing, the
// driver's aggregation, the controller's store, and the CLI's helpers.
import { describe, expect, it } from "vitest";
import { CalcGraph, DEFAULT_CALC_CONFIG, renderProfile, type HostUpdate } from "../../services/calc/index.js";
import { FLOW_CODES, logPrefix, parseLogPrefix } from "../../services/contract/flow-report-format.js";
import { renderFlowLogChains } from "../../services/driver/flows/flow-log-chains.js";
import { decidedBy } from "../../services/cli/decided-by.js";
import { flowJson, mergeRecords, parseDuration } from "../../services/cli/flows.js";
import { FLOW_LIMITS, FlowStore, checkObservation } from "../../services/controller/flow-store.js";
import { FlowAggregator, type FlowPoint } from "../../services/driver/flows/flow-aggregator.js";
import type { FlowReaderOptions } from "../../services/driver/flows/flow-reader.js";
import { resolvePoint, startFlowReporter } from "../../services/driver/flows/flow-reporter.js";
import type { FlowReport } from "../../services/contract/sync.js";
import { createLogger } from "../../services/runtime/logger.js";
import { PcapNflogReader, parseIpHeaders, pointInterfaces, type NflogPacket } from "../../services/driver/flows/nflog-pcap.js";
import type { FlowRecord } from "../../services/gen/palisade/flow/v1/flow.js";
import type { FlowObservation } from "../../services/gen/palisade/sync/v1/sync.js";
import type { Endpoint, Profile } from "../../services/model/index.js";

const CFG = { ...DEFAULT_CALC_CONFIG, flowLogs: true };
// The endpoints below (DESIGN §6.5): tapa's list has a missing profile at position 1, tapc's is ["p"].

// ------------------------------------------------------------------ rendering

function hostChains(cfg = CFG, workloadToHost: "drop" | "accept" = "drop") {
  const updates: HostUpdate[] = [];
  const g = new CalcGraph({ onHostUpdates: (_h, _r, u) => { updates.push(...u); } }, { ...cfg, workloadToHost });
  const p: Profile = {
    id: "p", tags: [], labels: {},
    inboundRules: [
      { action: "allow", match: { protocol: "tcp", dstPorts: [{ first: 80, last: 80 }] }, negated: {} },
      { action: "deny", match: { protocol: "tcp", dstPorts: Array.from({ length: 20 }, (_, i) => ({ first: 1000 + i, last: 1000 + i })) }, negated: {} },
    ],
    outboundRules: [{ action: "allow", match: {}, negated: {} }],
  };
  const ep = (id: string, name: string, extra: Partial<Endpoint> = {}): Endpoint => ({
    host: "h", orchestrator: "o", workload: id, id: "e", name, state: "active", mac: "02:00:00:00:00:01",
    ipv4Nets: ["198.18.0.1/32"], ipv6Nets: [], profileIds: ["p", "ghost"], labels: {}, ...extra,
  });
  g.upsertProfile(p);
  g.upsertEndpoint(ep("a", "tapa"));
  g.upsertEndpoint(ep("b", "tapb", { state: "inactive" }));
  g.upsertEndpoint(ep("c", "tapc", { profileIds: ["p"], ipv4Nets: ["198.18.0.3/32", "198.18.0.4/32"] }));
  g.flush(1);
  const chains = new Map<string, readonly string[]>();
  for (const u of g.snapshot("h").updates) if (u.type === "chain-update") chains.set(`${u.chain.family}:${u.chain.name}`, u.chain.rules);
  return chains;
}

const prefixOf = (rule: string) => /--nflog-prefix (\S+)/.exec(rule)?.[1];

describe("flow report points in the rendering", () => {
  it("every DROP a workload, position, profile, root, MAC or workload-to-host chain renders is preceded by its report, with the right code", () => {
    const chains = hostChains();
    let drops = 0;
    // The mirrored chains (DESIGN §6.5) report nothing: a re-check is no new flow.
    const mirrored = /^[46]:pal-(?:r[ft](?:\d|$)|qi[-_]|qo[-_])/;
    let mirroredChains = 0;
    for (const [key, rules] of chains) {
      if (mirrored.test(key)) {
        mirroredChains++;
        expect(rules.some((r) => r.includes("NFLOG") || /-j pal-log/.test(r)), key).toBe(false);
        continue;
      }
      rules.forEach((r, i) => {
        if (!r.endsWith("-j DROP")) return;
        drops++;
        // The report line is the nearest NFLOG above the DROP, and a pal-log call precedes it.
        const above = rules.slice(0, i);
        const nflog = [...above].reverse().find((x) => x.includes("-j NFLOG"));
        expect(nflog, `${key} line ${i}: ${r}`).toBeDefined();
        expect(above.some((x) => x.endsWith("-j pal-log"))).toBe(true);
        const p = parseLogPrefix(prefixOf(nflog!)!)!;
        expect(p.chain).toBe(key.slice(2));
        expect(FLOW_CODES[p.code].verdict).toBe("deny");
      });
    }
    expect(drops).toBeGreaterThan(10);
    // Per family: pal-rf/pal-rt and their two positions' chains, profile p's pal-qi/pal-qo.
    expect(mirroredChains).toBe(16);
    const codes = (key: string) => (chains.get(key) ?? []).map(prefixOf).filter(Boolean).map((x) => parseLogPrefix(x!)!);
    // A missing profile reports its position (the flow store names it from the endpoint's list).
    // A position that finds no line for the packet: no profile there, default deny.
    expect(codes("4:pal-ct1")).toEqual([{ code: "m", chain: "pal-ct1", n: 1 }, { code: "d", chain: "pal-ct1", n: undefined }]);
    expect(codes("4:pal-ct")).toEqual([{ code: "d", chain: "pal-ct", n: undefined }]);
    expect(codes("4:pal-cf1").map((c) => c.code)).toEqual(["m", "d"]);
    expect(codes("6:pal-cf").map((c) => c.code)).toEqual(["d"]);
    expect(codes("4:pal-ct0")).toEqual([{ code: "d", chain: "pal-ct0", n: undefined }]);
    // The MAC check reports anti-spoofing; the roots an inactive endpoint, then "not an endpoint's (address, interface)".
    expect(codes("4:pal-from-wl-mac")).toEqual([{ code: "s", chain: "pal-from-wl-mac", n: undefined }]);
    for (const root of ["pal-from-wl-dispatch", "pal-to-wl-dispatch"]) {
      expect(codes(`4:${root}`)).toEqual([{ code: "i", chain: root, n: undefined }, { code: "n", chain: root, n: undefined }]);
    }
    expect(codes("6:pal-wl-to-host")).toEqual([{ code: "h", chain: "pal-wl-to-host", n: undefined }]);
    expect(codes("4:pal-pi-p")).toEqual([{ code: "A", chain: "pal-pi-p", n: 0 }, { code: "D", chain: "pal-pi-p", n: 1 }]);
  });

  it("profile chains carry the model's rule index however many lines a rule needs; allow reports need the accept mark unset", () => {
    const p: Profile = {
      id: "q", tags: [], labels: {},
      inboundRules: [
        { action: "allow", ipVersion: 6, match: {}, negated: {} }, // index 0: not in IPv4
        { action: "allow", match: { protocol: "udp", dstPorts: Array.from({ length: 20 }, (_, i) => ({ first: 2000 + i, last: 2000 + i })) }, negated: {} },
      ],
      outboundRules: [],
    };
    const v4 = renderProfile(p, CFG).chains.find((c) => c.family === 4 && c.name === "pal-pi-q")!;
    const reports = v4.rules.filter((r) => r.includes("NFLOG"));
    expect(reports.map((r) => prefixOf(r))).toEqual(["pal:A:pal-pi-q:1", "pal:A:pal-pi-q:1"]); // two multiport lines, one rule
    for (const r of reports) expect(r).toContain("-m mark --mark 0x2000000/0x3000000");
    expect(v4.rules.filter((r) => r.endsWith("-j pal-log-allow")).every((r) => r.includes("-m mark ! --mark 0x1000000/0x1000000"))).toBe(true);
    // Off: exactly the plain rendering.
    expect(renderProfile(p, DEFAULT_CALC_CONFIG).chains.flatMap((c) => c.rules).some((r) => r.includes("pal-log") || r.includes("NFLOG"))).toBe(false);
  });

  it("workload chains clear the log mark with the accept mark before their profiles (a mark left upstream cannot report)", () => {
    const chains = hostChains();
    // After the re-check divert (DESIGN §6.5), which only a reply-direction re-check takes.
    expect(chains.get("4:pal-ct")!.slice(0, 2)).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rt", "-j MARK --set-xmark 0x0/0x3000000"]);
    expect(chains.get("4:pal-cf")!.slice(0, 3)).toEqual(["-m mark --mark 0x4000000/0x4000000 -g pal-rf", "-j pal-from-wl-mac", "-j MARK --set-xmark 0x0/0x3000000"]);
  });

  it("prefixes fit NFLOG's 64 bytes for the longest names and round-trip", () => {
    const long = renderProfile({ id: "x".repeat(128), tags: [], labels: {}, inboundRules: Array.from({ length: 1000 }, () => ({ action: "deny" as const, match: {}, negated: {} })), outboundRules: [] }, CFG);
    let prefixes = 0;
    for (const c of long.chains) {
      for (const r of c.rules) {
        const pre = prefixOf(r);
        if (!pre) continue;
        prefixes++;
        expect(pre.length).toBeLessThan(64);
        expect(parseLogPrefix(pre)).toBeDefined();
      }
    }
    expect(prefixes).toBeGreaterThanOrEqual(1000); // one per deny rule at least: the loop checked something
    expect(parseLogPrefix(logPrefix("D", "pal-pi_abcdefghijklmnopqrst", 999))).toEqual({ code: "D", chain: "pal-pi_abcdefghijklmnopqrst", n: 999 });
    for (const bad of ["", "pal:X:pal-pi-a", "pal:D:chain", "pal:D:pal-pi-a:1:2", "other:D:pal-pi-a", "pal:D:pal-pi a"]) expect(parseLogPrefix(bad)).toBeUndefined();
  });

  it("the driver's rate-limit chains: one limit rule per family; allow reports go through it only with --flow-logs all", () => {
    const all = renderFlowLogChains({ mode: "all", ratePerSecond: 7, burst: 9 }, 4);
    expect(all.map((c) => [c.name, c.rules])).toEqual([
      ["pal-log", ["-j MARK --set-xmark 0x0/0x2000000", "-m limit --limit 7/second --limit-burst 9 -j MARK --set-xmark 0x2000000/0x2000000", "-m mark ! --mark 0x2000000/0x2000000"]],
      ["pal-log-allow", ["-g pal-log"]],
    ]);
    expect(renderFlowLogChains({ mode: "denied", ratePerSecond: 7, burst: 9 }, 6)[1]!.rules).toEqual(["-j MARK --set-xmark 0x0/0x2000000"]);
  });
});

// ------------------------------------------------------------ pcap and headers

/** One NFLOG TLV: length and type in the capturing host's byte order, the value as given (network order). */
function tlv(type: number, value: Buffer, little: boolean): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  if (little) {
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
  } else {
    b.writeUInt16BE(len, 0);
    b.writeUInt16BE(type, 2);
  }
  value.copy(b, 4);
  return b;
}
const be32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };

function ipv4Tcp(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x45; b[9] = 6;
  Buffer.from(src).copy(b, 12); Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(sport, 20); b.writeUInt16BE(dport, 22);
  return b;
}

/** An NFLOG record as a host of that byte order captures it (the header's resource id is in network order). */
function nflogRecord(prefix: string, payload: Buffer, little = true, indev = 2, outdev = 3): Buffer {
  const t = (type: number, value: Buffer) => tlv(type, value, little);
  return Buffer.concat([Buffer.from([2, 0, 0x10, 0x92]), t(1, Buffer.from([0x08, 0x00, 2, 0])), t(10, Buffer.from(`${prefix}\0`)), t(4, be32(indev)), t(5, be32(outdev)), t(9, payload)]);
}

function pcap(records: Buffer[], little = true, linktype = 239): Buffer {
  const w32 = (n: number) => { const b = Buffer.alloc(4); little ? b.writeUInt32LE(n) : b.writeUInt32BE(n); return b; };
  const w16 = (n: number) => { const b = Buffer.alloc(2); little ? b.writeUInt16LE(n) : b.writeUInt16BE(n); return b; };
  const head = Buffer.concat([w32(0xa1b2c3d4), w16(2), w16(4), w32(0), w32(0), w32(262144), w32(linktype)]);
  return Buffer.concat([head, ...records.flatMap((r, i) => [w32(1_800_000_000 + i), w32(500_000), w32(r.length), w32(r.length), r])]);
}

describe("the NFLOG pcap reader", () => {
  const stream = pcap([nflogRecord("pal:D:pal-pi-db:1", ipv4Tcp([198, 18, 1, 10], [198, 18, 1, 11], 40000, 5432)), Buffer.from([1, 2]), nflogRecord("pal:n:pal-to-wl-dispatch", ipv4Tcp([198, 18, 1, 10], [198, 18, 1, 13], 40001, 80))]);

  // A capture's TLV headers are in the capturing host's byte order, which
  // its pcap headers (and magic) are written in too.
  const bigEndian = pcap([nflogRecord("pal:d:pal-tw-tapa", ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), false, 0x0102, 0x0304)], false);
  for (const [name, data] of [["little-endian", stream], ["big-endian", bigEndian]] as const) {
    it(`parses a ${name} stream fed in any chunking`, () => {
      for (const size of [1, 3, 7, 64, data.length]) {
        const r = new PcapNflogReader();
        const out: NflogPacket[] = [];
        for (let i = 0; i < data.length; i += size) r.feed(data.subarray(i, i + size), (p) => out.push(p));
        expect(r.failed).toBeUndefined();
        expect([out.length, r.malformed]).toEqual(name === "little-endian" ? [2, 1] : [1, 0]);
        expect(out[0]).toMatchObject(name === "little-endian" ? { indev: 2, outdev: 3, hook: 2 } : { indev: 0x0102, outdev: 0x0304, hook: 2 });
        expect(out[0]!.prefix).toBe(name === "little-endian" ? "pal:D:pal-pi-db:1" : "pal:d:pal-tw-tapa");
        expect(parseIpHeaders(out[0]!.payload!)).toMatchObject(name === "little-endian" ? { src: "198.18.1.10", dstPort: 5432 } : { src: "1.2.3.4", dst: "5.6.7.8", srcPort: 1, dstPort: 2 });
        expect(out[0]!.timeMs).toBe(1_800_000_000_500);
      }
    });
  }

  // A bridged frame (br_netfilter): in/out are the bridge, the taps come as
  // NFULA_IFINDEX_PHYSINDEV (6) / PHYSOUTDEV (7).
  it("reads a bridged frame's bridge ports, and a point is judged on them", () => {
    for (const little of [true, false]) {
      const base = nflogRecord("pal:D:pal-pi-db:1", ipv4Tcp([10, 77, 0, 10], [10, 77, 0, 11], 40000, 22), little, 9, 9);
      const rec = Buffer.concat([base, tlv(6, be32(21), little), tlv(7, be32(22), little)]);
      const out: NflogPacket[] = [];
      new PcapNflogReader().feed(pcap([rec], little), (p) => out.push(p));
      expect(out[0]).toMatchObject({ indev: 9, outdev: 9, physindev: 21, physoutdev: 22 });
      expect(pointInterfaces(out[0]!)).toEqual({ indev: 21, outdev: 22 });
    }
    // Routed (no physdev), and routed out of a bridge port (physindev only).
    expect(pointInterfaces({ indev: 2, outdev: 3 })).toEqual({ indev: 2, outdev: 3 });
    expect(pointInterfaces({ indev: 9, outdev: 3, physindev: 21 })).toEqual({ indev: 21, outdev: 3 });
    expect(pointInterfaces({})).toEqual({ indev: 0, outdev: 0 });
  });

  it("counts what is not an NFLOG packet, and gives up on a stream that is not NFLOG pcap", () => {
    const r = new PcapNflogReader();
    const out: NflogPacket[] = [];
    r.feed(stream, (p) => out.push(p));
    expect([out.length, r.malformed]).toEqual([2, 1]);
    const wrong = new PcapNflogReader();
    wrong.feed(pcap([], true, 1), () => undefined);
    expect(wrong.failed).toContain("link type 1");
    const garbage = new PcapNflogReader();
    garbage.feed(Buffer.alloc(64, 0x41), () => undefined);
    expect(garbage.failed).toContain("not a pcap stream");
  });

  it("reads IPv4 and IPv6 headers (extension headers skipped, ICMP type and code, fragments)", () => {
    expect(parseIpHeaders(ipv4Tcp([198, 18, 1, 10], [198, 18, 1, 11], 40000, 5432))).toEqual({ ipVersion: 4, src: "198.18.1.10", dst: "198.18.1.11", protocol: 6, srcPort: 40000, dstPort: 5432 });
    const v6 = Buffer.alloc(40 + 8 + 8);
    v6[0] = 0x60; v6[6] = 0; // hop-by-hop, then ICMPv6
    Buffer.from("20010db8000100000000000000000010", "hex").copy(v6, 8);
    Buffer.from("20010db8000100000000000000000011", "hex").copy(v6, 24);
    v6[40] = 58; v6[41] = 0; v6[48] = 128; v6[49] = 0;
    expect(parseIpHeaders(v6)).toEqual({ ipVersion: 6, src: "2001:db8:1::10", dst: "2001:db8:1::11", protocol: 58, icmpType: 128, icmpCode: 0 });
    const frag = ipv4Tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2);
    frag.writeUInt16BE(0x0010, 6); // offset 16*8: no transport header here
    expect(parseIpHeaders(frag)).toEqual({ ipVersion: 4, src: "1.1.1.1", dst: "2.2.2.2", protocol: 6 });
    expect(parseIpHeaders(Buffer.from([0x45, 0]))).toBeUndefined();
    expect(parseIpHeaders(Buffer.alloc(40))).toBeUndefined();
  });
});

// ------------------------------------------------------------- driver side

const point = (extra: Partial<FlowPoint> = {}): FlowPoint => ({
  ipVersion: 4, src: "198.18.1.10", dst: "198.18.1.11", protocol: 6, srcPort: 40000, dstPort: 81,
  endpointKey: "h/o/w/e", interfaceName: "tapb", direction: "inbound", verdict: "deny", decision: "rule", chain: "pal-pi-db", index: 1, ...extra,
});

describe("resolution and aggregation on the driver", () => {
  const eps = new Map([["tapa", "h/o/a/e"], ["tapb", "h/o/b/e"]]);
  const of = (iface: string) => eps.get(iface);
  it("resolves direction and endpoint from the chain and the packet's interfaces", () => {
    expect(resolvePoint(parseLogPrefix("pal:D:pal-pi-db:1")!, "tapa", "tapb", of)).toMatchObject({ direction: "inbound", endpointKey: "h/o/b/e", interfaceName: "tapb", index: 1, decision: "rule" });
    expect(resolvePoint(parseLogPrefix("pal:A:pal-po_abcdef:0")!, "tapa", "tapb", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", verdict: "allow" });
    expect(resolvePoint(parseLogPrefix("pal:s:pal-from-wl-mac")!, "tapa", "lnk0a", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", decision: "anti-spoofing" });
    expect(resolvePoint(parseLogPrefix("pal:n:pal-to-wl-dispatch")!, "tapa", "tapxyz", of)).toMatchObject({ direction: "inbound", endpointKey: "", interfaceName: "tapxyz", decision: "no-endpoint" });
    expect(resolvePoint(parseLogPrefix("pal:h:pal-wl-to-host")!, "tapa", "", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", decision: "workload-to-host" });
    expect(resolvePoint(parseLogPrefix("pal:m:pal-ct2:2")!, "tapa", "tapb", of)).toMatchObject({ decision: "missing-profile", index: 2 });
  });

  it("the bridge-port guard (DESIGN §6.3): from a port, its drop is anti-spoofing for an endpoint's port and no-endpoint otherwise; to a port, inbound", () => {
    expect(resolvePoint(parseLogPrefix("pal:n:pal-bgf-tap1")!, "tapa", "br0", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", decision: "anti-spoofing" });
    expect(resolvePoint(parseLogPrefix("pal:n:pal-bgf")!, "tapz", "br0", of)).toMatchObject({ direction: "outbound", endpointKey: "", decision: "no-endpoint" });
    expect(resolvePoint(parseLogPrefix("pal:n:pal-bgt")!, "br0", "tapb", of)).toMatchObject({ direction: "inbound", interfaceName: "tapb", decision: "no-endpoint" });
    expect(resolvePoint(parseLogPrefix("pal:s:pal-br-from")!, "tapa", "br0", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", decision: "anti-spoofing" });
  });

  it("set-based layout: the from-workload root's last drop is anti-spoofing on an endpoint's interface, no-endpoint elsewhere", () => {
    expect(resolvePoint(parseLogPrefix("pal:n:pal-from-wl-dispatch")!, "tapa", "lnk0a", of)).toMatchObject({ direction: "outbound", endpointKey: "h/o/a/e", decision: "anti-spoofing" });
    expect(resolvePoint(parseLogPrefix("pal:n:pal-from-wl-dispatch")!, "tapz", "lnk0a", of)).toMatchObject({ direction: "outbound", endpointKey: "", decision: "no-endpoint" });
    // Inbound, an address that is not the endpoint's: no endpoint holds it.
    expect(resolvePoint(parseLogPrefix("pal:n:pal-to-wl-dispatch")!, "lnk0a", "tapb", of)).toMatchObject({ direction: "inbound", endpointKey: "", decision: "no-endpoint" });
  });

  it("aggregates one flow's reports into one record per window, bounded, dropping (and counting) what does not fit", () => {
    const a = new FlowAggregator(3);
    expect(a.add(point(), 1000)).toBe(true);
    expect(a.add(point(), 1500)).toBe(true);
    expect(a.add(point({ srcPort: 40001 }), 1200)).toBe(true);
    expect(a.add(point({ decision: "default-deny", index: -1, chain: "pal-tw-tapb" }), 1300)).toBe(true);
    expect(a.add(point({ srcPort: 40002 }), 1400)).toBe(false);
    expect(a.add(point(), 1600)).toBe(true); // an existing record still counts
    expect(a.dropped).toBe(1);
    const out = a.drain();
    expect(out.map((r) => [r.srcPort, r.packets, r.firstSeenUnixMs, r.lastSeenUnixMs])).toEqual([[40000, 3, 1000, 1600], [40001, 1, 1200, 1200], [40000, 1, 1300, 1300]]);
    expect(a.size).toBe(0);
  });
});

describe("the driver's flow reporter", () => {
  /** A reporter whose reader is driven by the test; `send` answers as `connected` says. */
  function reporter(connected: () => boolean) {
    let hooks: FlowReaderOptions | undefined;
    const sent: FlowReport[] = [];
    const r = startFlowReporter({ mode: "denied", ratePerSecond: 100, burst: 200, windowMs: 3_600_000 }, {
      logger: createLogger({ name: "test", level: "silent" }), hostname: "hv1", endpointOfInterface: () => "hv1/o/w/e",
      send: (report) => { if (!connected()) return false; sent.push(structuredClone(report)); return true; },
      runner: { run: async () => { throw new Error("no iptables in unit tests"); } }, iptables: { 4: "iptables", 6: "ip6tables" }, families: [4],
      startReader: (o) => {
        hooks = o;
        return { pid: undefined, restarts: 0, listening: async () => true, stop: async () => undefined };
      },
    });
    const packet = (dport: number): NflogPacket => ({ timeMs: 1_000, prefix: "pal:D:pal-pi-db:1", indev: 0, outdev: 0, payload: ipv4Tcp([198, 18, 1, 10], [198, 18, 1, 11], 40000, dport) });
    return { r, sent, hooks: hooks!, packet };
  }

  it("a report it could not send keeps its drop counts: they go with the next report, added up", async () => {
    let up = false;
    const { r, sent, hooks, packet } = reporter(() => up);
    try {
      hooks.onMalformed!(3);
      hooks.onPacket({ timeMs: 1_000, prefix: "not ours" }); // unparsed
      hooks.onPacket(packet(5432));
      r.flush(); // not delivered: 1 record (disconnected) and 4 unparsed
      expect(sent).toEqual([]);
      hooks.onMalformed!(2);
      r.flush(); // no records, still not delivered
      up = true;
      hooks.onPacket(packet(5433));
      r.flush();
      expect(sent).toHaveLength(1);
      expect(sent[0]!.records.map((x) => x.dstPort)).toEqual([5433]);
      expect(sent[0]!.dropped).toEqual({ unparsed: 6, disconnected: 1 });
      expect(r.dropped).toEqual({ unparsed: 6, disconnected: 1 });
      // Delivered once: the next report starts from nothing.
      hooks.onPacket(packet(5434));
      r.flush();
      expect(sent[1]!.dropped).toEqual({});
    } finally {
      await r.stop();
    }
  });

  it("a bridged frame's report names the tap it crossed, not the bridge", async () => {
    const { r, sent, hooks, packet } = reporter(() => true);
    try {
      // Interface indices that no interface here has: named if<index>.
      hooks.onPacket({ ...packet(22), indev: 900001, outdev: 900001, physindev: 900002, physoutdev: 900003 });
      hooks.onPacket({ ...packet(23), prefix: "pal:A:pal-po_abcdef:0", indev: 900001, outdev: 900001, physindev: 900002, physoutdev: 900003 });
      r.flush();
      const recs = sent[0]!.records;
      expect(recs.find((x) => x.dstPort === 22)).toMatchObject({ direction: "inbound", interfaceName: "if900003" });
      expect(recs.find((x) => x.dstPort === 23)).toMatchObject({ direction: "outbound", interfaceName: "if900002" });
    } finally {
      await r.stop();
    }
  });

  it("what waits for a controller is bounded: one counter per reason, however many windows fail", async () => {
    let up = false;
    const { r, sent, hooks, packet } = reporter(() => up);
    try {
      for (let i = 0; i < 1_000; i++) {
        hooks.onMalformed!(1);
        hooks.onPacket(packet(1_000 + (i % 7)));
        r.flush();
      }
      up = true;
      r.flush();
      expect(sent).toHaveLength(1);
      expect(sent[0]!.records).toEqual([]);
      expect(sent[0]!.dropped).toEqual({ unparsed: 1_000, disconnected: 1_000 });
    } finally {
      await r.stop();
    }
  });
});

// --------------------------------------------------------- controller side

const obs = (extra: Partial<FlowObservation> = {}): FlowObservation => ({
  endpointKey: "hv1/o/b/e", interfaceName: "tapb", direction: "inbound", ipVersion: 4, src: "198.18.1.10", dst: "198.18.1.11",
  protocol: 6, srcPort: 40000, dstPort: 81, verdict: "deny", decision: "rule", chain: "pal-pi_hashedname", index: 1, packets: 1,
  firstSeenUnixMs: 1000, lastSeenUnixMs: 1000, ...extra,
});
const resolver = {
  profileOfChain: (c: string) => (c === "pal-pi_hashedname" ? "a-very-long-profile-id" : undefined),
  profileIdsOf: (k: string) => (k === "hv1/o/b/e" ? ["p", "ghost"] : undefined),
  networkOf: (k: string) => (k === "hv1/o/b/e" ? "net-b" : undefined),
};

describe("the controller's flow store", () => {
  it("resolves profiles (hashed chain names, missing-profile positions), merges a flow's windows, and filters", () => {
    let now = 10_000;
    const s = new FlowStore(resolver, "r1", {}, () => now);
    s.ingest("hv1", { records: [obs(), obs({ decision: "missing-profile", chain: "pal-tw-tapb", index: 1, dstPort: 82 }), obs({ verdict: "allow", direction: "outbound", endpointKey: "hv1/o/a/e", decision: "rule", index: 0, chain: "pal-po-open" })], dropped: {} });
    s.ingest("hv1", { records: [obs({ packets: 2, firstSeenUnixMs: 2000, lastSeenUnixMs: 3000 })], dropped: {} });
    const deny = s.list({ verdict: "deny" }, 100);
    expect(deny.map((r) => [r.decision, r.profile, r.ruleIndex, r.packets, r.firstSeenUnixMs, r.lastSeenUnixMs])).toEqual([
      ["missing-profile", "ghost", -1, 1, 1000, 1000],
      ["rule", "a-very-long-profile-id", 1, 3, 1000, 3000],
    ]);
    expect(s.list({ endpoint: "hv1/o/a/e" }, 100).map((r) => r.verdict)).toEqual(["allow"]);
    expect(s.list({ host: "hv2" }, 100)).toEqual([]);
    expect(s.list({ sinceUnixMs: 2500 }, 100)).toHaveLength(1);
    expect(s.list({}, 1)).toHaveLength(1);
    now += FLOW_LIMITS.retentionMs + 5_000;
    expect(s.list({}, 100)).toEqual([]); // aged out
    expect(s.size).toBe(0);
  });

  it("names the endpoint's network where it has one (the model's, by the reported endpoint key)", () => {
    const s = new FlowStore(resolver, "r1", {}, () => 1000);
    s.ingest("hv1", { records: [obs(), obs({ endpointKey: "hv1/o/a/e", interfaceName: "tapa" }), obs({ endpointKey: "", interfaceName: "tapn", decision: "no-endpoint", chain: "pal-to-wl", index: -1 })], dropped: {} });
    expect(s.list({}, 100).map((r) => [r.interfaceName, r.network])).toEqual([["tapb", "net-b"], ["tapa", ""], ["tapn", ""]]);
    const json = s.list({}, 100).map(flowJson);
    expect(json[0]).toMatchObject({ endpoint: "hv1/o/b/e", network: "net-b" });
    expect(Object.keys(json[0]!).indexOf("network")).toBe(Object.keys(json[0]!).indexOf("endpoint") + 1);
    expect("network" in json[1]!).toBe(false);
    expect("network" in json[2]!).toBe(false);
  });

  it("refuses what a driver may not say: another host's endpoint, unknown words, bad addresses", () => {
    expect(checkObservation("hv1", obs())).toBeUndefined();
    expect(checkObservation("hv1", obs({ endpointKey: "hv2/o/b/e" }))).toBe("endpoint of another host");
    expect(checkObservation("hv1", obs({ decision: "because" }))).toBe("decision");
    expect(checkObservation("hv1", obs({ verdict: "allow", decision: "default-deny" }))).toBe("decision");
    expect(checkObservation("hv1", obs({ chain: "INPUT" }))).toBe("chain");
    expect(checkObservation("hv1", obs({ dst: "2001:db8::1" }))).toBe("addresses");
    expect(checkObservation("hv1", obs({ direction: "sideways" }))).toBe("direction");
    const dropped: string[] = [];
    const s = new FlowStore(resolver, "r1", { onDropped: (r) => dropped.push(r) });
    s.ingest("hv1", { records: [obs({ endpointKey: "hv2/o/b/e" })], dropped: {} });
    expect([s.size, dropped]).toEqual([0, ["invalid"]]);
  });

  it("is bounded: per host (least recently seen evicted), in total (refused, counted), and in watchers", () => {
    const saved = { ...FLOW_LIMITS };
    Object.assign(FLOW_LIMITS, { perHost: 3, total: 5, watchers: 1 });
    try {
      const s = new FlowStore(resolver, "r1", {}, () => 1000);
      s.ingest("hv1", { records: [1, 2, 3, 4].map((i) => obs({ srcPort: i })), dropped: {} });
      expect(s.list({}, 100).map((r) => r.srcPort)).toEqual([2, 3, 4]);
      s.ingest("hv2", { records: [1, 2, 3].map((i) => obs({ endpointKey: "", srcPort: i })), dropped: {} });
      expect([s.size, s.dropped]).toEqual([5, 1]);
      const off = s.watch({}, () => undefined)!;
      expect(s.watch({}, () => undefined)).toBeUndefined();
      off();
      expect(s.watch({}, () => undefined)).toBeDefined();
    } finally {
      Object.assign(FLOW_LIMITS, saved);
    }
  });

  it("hands watchers the matching records as List would show them", () => {
    const s = new FlowStore(resolver, "r1");
    const seen: FlowRecord[] = [];
    s.watch({ verdict: "allow" }, (r) => seen.push(r));
    s.ingest("hv1", { records: [obs(), obs({ verdict: "allow", decision: "rule", index: 0, chain: "pal-po-open", direction: "outbound", endpointKey: "hv1/o/a/e" })], dropped: {} });
    expect(seen.map((r) => [r.verdict, r.host, r.controller])).toEqual([["allow", "hv1", "r1"]]);
  });
});

// ---------------------------------------------------------------------- CLI

describe("palisadectl flows helpers", () => {
  it("parses durations and refuses anything else", () => {
    expect([parseDuration("90s"), parseDuration("5m"), parseDuration("1h30m"), parseDuration("250ms"), parseDuration("2d")]).toEqual([90_000, 300_000, 5_400_000, 250, 172_800_000]);
    for (const bad of ["", "5", "5 m", "-5m", "0s", "m", "1.5h", "5M"]) expect(parseDuration(bad)).toBeUndefined();
  });

  it("merges replicas' answers: one record per flow, packets summed, oldest first", () => {
    const r = (extra: Partial<FlowRecord>): FlowRecord => ({
      host: "hv1", endpoint: "hv1/o/b/e", interfaceName: "tapb", direction: "inbound", src: "198.18.1.10", dst: "198.18.1.11", protocol: 6,
      srcPort: 1, dstPort: 81, verdict: "deny", decision: "rule", profile: "p", ruleIndex: 1, packets: 1, firstSeenUnixMs: 10, lastSeenUnixMs: 20,
      chain: "pal-pi-p", controller: "a", network: "", ...extra,
    });
    const merged = mergeRecords([[r({}), r({ srcPort: 2, lastSeenUnixMs: 5 })], [r({ packets: 2, firstSeenUnixMs: 5, lastSeenUnixMs: 30, controller: "b" })]]);
    expect(merged.map((x) => [x.srcPort, x.packets, x.firstSeenUnixMs, x.lastSeenUnixMs])).toEqual([[2, 1, 10, 5], [1, 3, 5, 30]]);
  });

  it("phrases decisions as trace does", () => {
    expect(decidedBy({ direction: "inbound", decision: "rule", profile: "db", ruleIndex: 0 })).toBe("inbound_rules[0] of profile db");
    expect(decidedBy({ direction: "outbound", decision: "rule", profile: "web", ruleIndex: 2 })).toBe("outbound_rules[2] of profile web");
    expect(decidedBy({ direction: "inbound", decision: "missing-profile", profile: "g" })).toBe("profile g does not exist (deny-all)");
    expect(decidedBy({ direction: "inbound", decision: "default-deny" })).toBe("no rule matched (default deny)");
    expect(decidedBy({ direction: "inbound", decision: "inactive" })).toBe("endpoint is inactive");
  });
});
