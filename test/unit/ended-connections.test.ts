// Revoked connections, visible (issue #21 item 7; DESIGN §6.12, §6.14), the
// parts without a kernel: the report rules on the stale path and the
// report chains, the prefix code, the driver's resolution of an "ended"
// report (whose connection, which direction, which revision), the exact
// counter's reading, and the revision carried through the controller's
// store to `palisadectl flows`.
import { describe, expect, it } from "vitest";
import { ENDED_CHAINS, parseLogPrefix } from "../../services/contract/flow-report-format.js";
import { flowJson, mergeRecords } from "../../services/cli/flows.js";
import { FlowStore, checkObservation } from "../../services/controller/flow-store.js";
import type { FlowReaderOptions } from "../../services/driver/flows/flow-reader.js";
import { originalTuple, resolvePoint, startFlowReporter } from "../../services/driver/flows/flow-reporter.js";
import type { FlowTuple } from "../../services/driver/flows/nflog-pcap.js";
import { createEndedCounter, ruleCounter } from "../../services/driver/kernel/ended-connections.js";
import { CommandError } from "../../services/driver/kernel/command-runner.js";
import { renderBaseChains } from "../../services/driver/plan/base-chains.js";
import { CT_PENDING, CT_REPORTED, PENDING_MARK } from "../../services/driver/plan/revocation.js";
import type { FlowReport } from "../../services/contract/sync.js";
import type { FlowRecord } from "../../services/gen/palisade/flow/v1/flow.js";
import type { FlowObservation } from "../../services/gen/palisade/sync/v1/sync.js";
import { createLogger } from "../../services/runtime/logger.js";

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;
const DENIED_UNREPORTED = `-m connmark --mark ${hex(CT_PENDING)}/${hex(CT_PENDING | CT_REPORTED)}`;

describe("the stale path reports a revoked connection once", () => {
  const rules = (epoch: number | undefined, bridged = false) => Object.fromEntries(renderBaseChains(["tap"], 4, bridged, epoch).map((c) => [c.name, c.rules]));

  it("each port form sends a denied, unreported connection's packet to the chain of its side and direction, before pending is set again", () => {
    for (const bridged of [false, true]) {
      const fwd = rules(9, bridged)["pal-FORWARD"]!;
      const ended = fwd.filter((r) => r.includes(DENIED_UNREPORTED));
      const expected = [
        ["-i tap+", "ORIGINAL", ENDED_CHAINS.outFrom], ["-i tap+", "REPLY", ENDED_CHAINS.inFrom],
        ...(bridged ? [["-m physdev --physdev-in tap+", "ORIGINAL", ENDED_CHAINS.outFrom], ["-m physdev --physdev-in tap+", "REPLY", ENDED_CHAINS.inFrom]] : []),
        ["-o tap+", "ORIGINAL", ENDED_CHAINS.inTo], ["-o tap+", "REPLY", ENDED_CHAINS.outTo],
        ...(bridged ? [["-m physdev --physdev-out tap+ --physdev-is-bridged", "ORIGINAL", ENDED_CHAINS.inTo], ["-m physdev --physdev-out tap+ --physdev-is-bridged", "REPLY", ENDED_CHAINS.outTo]] : []),
      ].map(([form, dir, chain]) => `${form} -m conntrack --ctstate ESTABLISHED --ctdir ${dir} ${DENIED_UNREPORTED} -j ${chain}`);
      expect(ended).toEqual(expected);
      // After the fast path and the RELATED rule, before the reply re-check and the pending mark.
      const first = fwd.indexOf(ended[0]!), last = fwd.indexOf(ended.at(-1)!);
      expect(fwd.slice(0, first).some((r) => r.includes("--ctstate RELATED -m connmark"))).toBe(true);
      expect(fwd.slice(0, last).some((r) => r.includes("-g pal-ct-reply") || r.includes(PENDING_MARK))).toBe(false);
      expect(fwd.slice(last).some((r) => r.includes("-g pal-ct-reply"))).toBe(true);
    }
    // INPUT's stale path too (a workload-to-host connection the host's policy revoked).
    const inp = rules(9)["pal-INPUT"]!;
    const i = inp.findIndex((r) => r.includes(`--ctdir ORIGINAL ${DENIED_UNREPORTED} -j ${ENDED_CHAINS.outFrom}`));
    expect(i).toBeGreaterThan(-1);
    expect(i).toBeLessThan(inp.findIndex((r) => r.includes(PENDING_MARK)));
    // INPUT admits every reply (the host opened those connections): none is ever pending there.
    expect(inp.some((r) => r.includes(`--ctdir REPLY ${DENIED_UNREPORTED}`))).toBe(false);
  });

  it("the report chains mark the connection reported (the counted rule), take a token, and report code e with the epoch", () => {
    const on = rules(9);
    expect(on[ENDED_CHAINS.count]).toEqual([`-j CONNMARK --set-xmark ${hex(CT_REPORTED)}/${hex(CT_REPORTED)}`, "-j pal-log"]);
    for (const name of [ENDED_CHAINS.outFrom, ENDED_CHAINS.inTo, ENDED_CHAINS.inFrom, ENDED_CHAINS.outTo]) {
      expect(on[name]).toEqual([
        `-j ${ENDED_CHAINS.count}`,
        `-m mark --mark 0x2000000/0x2000000 -j NFLOG --nflog-group 4242 --nflog-size 128 --nflog-threshold 1 --nflog-prefix pal:e:${name}:9`,
        "-j MARK --set-xmark 0x0/0x2000000",
      ]);
      expect(parseLogPrefix(`pal:e:${name}:65535`)).toEqual({ code: "e", chain: name, n: 65535 });
    }
    // A new epoch renames nothing but the prefixes (the counted rule is never rewritten by it).
    expect(rules(10)[ENDED_CHAINS.count]).toEqual(on[ENDED_CHAINS.count]);
    expect(rules(10)[ENDED_CHAINS.inTo]![1]).toContain("pal:e:pal-end-in:10");
    // Revoked connections left alone: no report rules, no chains.
    const off = rules(undefined, true);
    expect(Object.keys(off).filter((n) => n.startsWith("pal-end"))).toEqual([]);
    expect(Object.values(off).flat().some((r) => r.includes("pal-end"))).toBe(false);
  });
});

describe("an ended report on the driver", () => {
  const eps = new Map([["tapa", "h/o/a/e"], ["tapb", "h/o/b/e"]]);
  const of = (iface: string) => eps.get(iface);

  it("names the connection's endpoint and direction by the chain: original packets as they go, replies the other way", () => {
    const r = (chain: string, indev: string, outdev: string) => resolvePoint(parseLogPrefix(`pal:e:${chain}:7`)!, indev, outdev, of);
    // a opened it (a's packet in from tapa; the server's reply out to tapa).
    expect(r(ENDED_CHAINS.outFrom, "tapa", "lnk0a")).toMatchObject({ endpointKey: "h/o/a/e", interfaceName: "tapa", direction: "outbound", verdict: "deny", decision: "ended", index: 7 });
    expect(r(ENDED_CHAINS.outTo, "lnk0a", "tapa")).toMatchObject({ endpointKey: "h/o/a/e", interfaceName: "tapa", direction: "outbound", decision: "ended" });
    // b accepted it (the client's packet out to tapb; b's reply in from tapb).
    expect(r(ENDED_CHAINS.inTo, "lnk0a", "tapb")).toMatchObject({ endpointKey: "h/o/b/e", interfaceName: "tapb", direction: "inbound", decision: "ended" });
    expect(r(ENDED_CHAINS.inFrom, "tapb", "lnk0a")).toMatchObject({ endpointKey: "h/o/b/e", interfaceName: "tapb", direction: "inbound", decision: "ended" });
  });

  it("turns a reply back into the connection's tuple (ports, ICMP echo reply into the request)", () => {
    const tcp: FlowTuple = { ipVersion: 4, src: "198.18.2.10", dst: "198.18.1.10", protocol: 6, srcPort: 7000, dstPort: 40000 };
    expect(originalTuple(tcp)).toEqual({ ipVersion: 4, src: "198.18.1.10", dst: "198.18.2.10", protocol: 6, srcPort: 40000, dstPort: 7000, icmpType: undefined });
    expect(originalTuple({ ipVersion: 4, src: "198.18.2.10", dst: "198.18.1.10", protocol: 1, icmpType: 0, icmpCode: 0 })).toMatchObject({ src: "198.18.1.10", dst: "198.18.2.10", icmpType: 8, icmpCode: 0 });
    expect(originalTuple({ ipVersion: 6, src: "2001:db8:2::a", dst: "2001:db8:1::a", protocol: 58, icmpType: 129, icmpCode: 0 })).toMatchObject({ icmpType: 128 });
  });

  it("the reporter sends it with the revision that set its epoch, in the connection's direction; unknown epochs carry none", async () => {
    let hooks: FlowReaderOptions | undefined;
    const sent: FlowReport[] = [];
    const r = startFlowReporter({ mode: "denied", ratePerSecond: 100, burst: 200, windowMs: 3_600_000 }, {
      logger: createLogger({ name: "test", level: "silent" }), hostname: "hv2", endpointOfInterface: (i) => (i === "if900002" ? "hv2/o/s/e" : undefined),
      send: (report) => { sent.push(structuredClone(report)); return true; },
      revisionOfEpoch: (f, e) => (f === 4 && e === 7 ? 42 : undefined),
      runner: { run: async () => { throw new Error("no iptables in unit tests"); } }, iptables: { 4: "iptables", 6: "ip6tables" }, families: [4],
      startReader: (o) => {
        hooks = o;
        return { pid: undefined, restarts: 0, listening: async () => true, stop: async () => undefined };
      },
    });
    try {
      // The server's reply (198.18.2.10:7000 -> client 198.18.1.10:40000) leaving its tap (ifindex 900002).
      hooks!.onPacket({ timeMs: 1_000, prefix: `pal:e:${ENDED_CHAINS.inFrom}:7`, indev: 900002, outdev: 900001, payload: ipv4Tcp([198, 18, 2, 10], [198, 18, 1, 10], 7000, 40000) });
      // Another connection, denied in an epoch the driver no longer knows.
      hooks!.onPacket({ timeMs: 1_000, prefix: `pal:e:${ENDED_CHAINS.inTo}:3`, indev: 900001, outdev: 900002, payload: ipv4Tcp([198, 18, 1, 10], [198, 18, 2, 10], 40001, 7001) });
      r.flush();
      const recs = sent[0]!.records;
      expect(recs.find((x) => x.dstPort === 7000)).toMatchObject({
        endpointKey: "hv2/o/s/e", direction: "inbound", src: "198.18.1.10", dst: "198.18.2.10", srcPort: 40000, dstPort: 7000,
        verdict: "deny", decision: "ended", chain: ENDED_CHAINS.inFrom, index: 7, revision: 42,
      });
      const other = recs.find((x) => x.dstPort === 7001)!;
      expect(other).toMatchObject({ endpointKey: "hv2/o/s/e", direction: "inbound", decision: "ended" });
      expect(other.revision).toBeUndefined();
    } finally {
      await r.stop();
    }
  });
});

describe("the exact count, from pal-end's counter", () => {
  const listing = (n: number) => `Chain pal-end (4 references)
    pkts      bytes target     prot opt in     out     source               destination
       ${n}     ${n * 60} CONNMARK   0    --  *      *       0.0.0.0/0            0.0.0.0/0            CONNMARK or 0x4000
       ${n}     ${n * 60} pal-log    0    --  *      *       0.0.0.0/0            0.0.0.0/0
`;

  it("reads the first rule's packet counter", () => {
    expect(ruleCounter(listing(17), 1)).toBe(17);
    expect(ruleCounter("Chain pal-end (0 references)\n pkts bytes target\n", 1)).toBeUndefined();
  });

  it("counts from a baseline (a previous driver's count is not its own), from 0 for a chain not there yet, again from 0 after a rewrite; a failed read changes nothing", async () => {
    const answers: Record<number, (string | Error)[]> = {
      4: [listing(5), listing(7), listing(7), new CommandError("iptables", "Another app is currently holding the xtables lock", 4), listing(9), listing(2)],
      6: [new CommandError("ip6tables", "ip6tables v1.8.9 (nf_tables): chain `pal-end' in table `filter' is incompatible, use 'nft' tool.", 1), listing(3), listing(3), listing(3), listing(3), listing(3)],
    };
    const ended: [number, number][] = [];
    const c = createEndedCounter({
      runner: { run: async (cmd, args) => {
        expect(args).toEqual(["-w", "5", "-t", "filter", "-L", "pal-end", "-n", "-v", "-x"]);
        const a = answers[cmd === "iptables" ? 4 : 6]!.shift()!;
        if (a instanceof Error) throw a;
        return { stdout: a };
      } },
      iptables: { 4: "iptables", 6: "ip6tables" }, families: [4, 6], onEnded: (f, n) => ended.push([f, n]),
    });
    for (let i = 0; i < 6; i++) await c.read();
    // v4: baseline 5, +2, +0, (lock: skipped), +2, rewritten: +2. v6: missing = 0, +3.
    expect(ended).toEqual([[4, 2], [6, 3], [4, 2], [4, 2]]);
  });
});

describe("the revision, carried to palisadectl flows", () => {
  const obs = (extra: Partial<FlowObservation> = {}): FlowObservation => ({
    endpointKey: "hv2/o/s/e", interfaceName: "taps", direction: "inbound", ipVersion: 4, src: "198.18.1.10", dst: "198.18.2.10",
    protocol: 6, srcPort: 40000, dstPort: 7000, verdict: "deny", decision: "ended", chain: ENDED_CHAINS.inTo, index: 7, packets: 1,
    firstSeenUnixMs: 1000, lastSeenUnixMs: 1000, revision: 42, ...extra,
  });
  const resolver = { profileOfChain: () => undefined, profileIdsOf: () => undefined, networkOf: () => undefined };

  it("the store takes an ended record with its revision, and refuses a revision on anything else or an ended allow", () => {
    expect(checkObservation("hv2", obs())).toBeUndefined();
    expect(checkObservation("hv2", obs({ revision: undefined }))).toBeUndefined();
    expect(checkObservation("hv2", obs({ decision: "rule", chain: "pal-pi-x" }))).toBe("revision");
    expect(checkObservation("hv2", obs({ verdict: "allow" }))).toBe("decision");
    const s = new FlowStore(resolver, "r1", {}, () => 1000);
    s.ingest("hv2", { records: [obs()], dropped: {} });
    const [r] = s.list({}, 10);
    expect(r).toMatchObject({ decision: "ended", verdict: "deny", revision: 42, profile: "", ruleIndex: -1 });
  });

  it("flows -o json shows it for ended records only, and replicas' answers merge per revision", () => {
    const rec = (extra: Partial<FlowRecord>): FlowRecord => ({
      host: "hv2", endpoint: "hv2/o/s/e", interfaceName: "taps", direction: "inbound", src: "198.18.1.10", dst: "198.18.2.10", protocol: 6,
      srcPort: 40000, dstPort: 7000, verdict: "deny", decision: "ended", profile: "", ruleIndex: -1, packets: 1, firstSeenUnixMs: 10, lastSeenUnixMs: 20,
      chain: ENDED_CHAINS.inTo, controller: "a", network: "", revision: 42, ...extra,
    });
    expect(flowJson(rec({}))).toMatchObject({ decision: "ended", verdict: "deny", revision: 42 });
    expect(flowJson(rec({ revision: undefined }))).toMatchObject({ decision: "ended", revision: null });
    expect("revision" in flowJson(rec({ decision: "default-deny", revision: undefined }))).toBe(false);
    const merged = mergeRecords([[rec({})], [rec({ controller: "b" }), rec({ revision: 43, lastSeenUnixMs: 30 })]]);
    expect(merged.map((x) => [x.revision, x.packets])).toEqual([[42, 2], [43, 1]]);
  });
});

function ipv4Tcp(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x45; b[9] = 6;
  Buffer.from(src).copy(b, 12); Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(sport, 20); b.writeUInt16BE(dport, 22);
  return b;
}
