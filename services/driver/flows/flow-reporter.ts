// Flow reports on the driver (DESIGN §6.12): reader → resolution →
// aggregation → the sync stream (and an optional JSON-lines file).
//
// Resolution: a report's prefix says the decision and the chain that made
// it (calc/render-flow-reports.ts); the packet's in/out interface, this host's
// endpoint → interface map (from the controller) and the chain name say
// which endpoint and direction. Profiles are resolved by the controller,
// which knows which profile a (possibly hashed) chain name stands for.
//
// Best effort, bounded, never blocking: one window of at most `maxKeys`
// records, sent whole when it ends; no record is queued for a disconnected
// controller (counted as dropped), but the drop counts are: a handful of
// counters, sent with the next report that gets through; the log file is
// skipped, not waited for, when its writer is behind.
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from "node:fs";
import type { Logger } from "pino";
import { FLOW_CODES, FLOW_LOG_CHAINS, FLOW_NFLOG_GROUP, parseLogPrefix, type FlowDecision, type ParsedPrefix } from "../../contract/flow-report-format.js";
import { FLOW_LIMITED_RULE } from "./flow-log-chains.js";
import { ENTRY_CHAINS } from "../../contract/dataplane-names.js";
import type { FlowReport } from "../../contract/sync.js";
import { PROTOCOL_NUMBERS, type IpVersion } from "../../model/index.js";
import type { CommandRunner } from "../kernel/command-runner.js";
import { FlowAggregator, type FlowPoint, type FlowRecord } from "./flow-aggregator.js";
import type { FlowMetrics } from "./flow-metrics.js";
import { startFlowReader, type FlowReader, type FlowReaderOptions } from "./flow-reader.js";
import { parseIpHeaders, pointInterfaces, type FlowTuple, type NflogPacket } from "./nflog-pcap.js";

export type FlowLogMode = "denied" | "all";

/** Why reports were lost: the `dropped` keys of a FlowReport and the metric's `reason` label. */
export type FlowDropReason = "unparsed" | "aggregator" | "file" | "disconnected" | "rate-limit";

export interface FlowReportOptions {
  mode: FlowLogMode;
  /** Reports per second per IP family (the kernel's token bucket, `-m limit`). */
  ratePerSecond: number;
  burst: number;
  /** Path of a JSON-lines file ("-" for stdout); none when undefined. */
  logFile?: string;
  /** Aggregation window; default 1 s. */
  windowMs?: number;
  /** Records per window; default 4,096. */
  maxKeys?: number;
  tcpdump?: string;
}

export const FLOW_DEFAULTS = { mode: "denied" as FlowLogMode, ratePerSecond: 100, burst: 200, windowMs: 1_000, maxKeys: 4_096 };

export interface FlowReporterDeps {
  logger: Logger;
  metrics?: FlowMetrics;
  hostname: string;
  /** Interface name → endpoint key, from the controller's desired state. */
  endpointOfInterface(name: string): string | undefined;
  /** Sends one window on the sync stream; false when no controller is connected. */
  send(report: FlowReport): boolean;
  /** For reading pal-log's counters (reports suppressed by the rate limit). */
  runner: CommandRunner;
  iptables: Record<IpVersion, string>;
  families: IpVersion[];
  /**
   * The revision whose apply set a family's policy epoch (DESIGN §6.14):
   * an "ended" report carries the epoch its connection was denied in.
   */
  revisionOfEpoch?(family: IpVersion, epoch: number): number | undefined;
  /** For tests: the NFLOG reader (default: tcpdump, startFlowReader). */
  startReader?: (o: FlowReaderOptions) => FlowReader;
}

export interface FlowReporter {
  readonly reader: FlowReader;
  readonly dropped: Readonly<Record<string, number>>;
  /** Ends the current window now (tests, shutdown). */
  flush(): void;
  stop(): Promise<void>;
}

const INBOUND_CHAIN = /^pal-(pi|ct|to-wl-dispatch|bgt|br-to|end-in)/;
/** An "ended" report of a reply-direction packet (ENDED_CHAINS): its workload is on the other side. */
const REPLY_ENDED_CHAIN = /^pal-end-.*-r$/;
/** The bridge-port guard from a port (driver/plan/bridge-guard.ts): its "n" is the from-root's. */
const FROM_GUARD_CHAIN = /^pal-bgf(-|$)/;

/** ifindex → name in this network namespace (/sys is the namespace's own under `ip netns exec`). */
function interfaceNames(): Map<number, string> {
  const m = new Map<number, string>();
  try {
    for (const name of readdirSync("/sys/class/net")) {
      try {
        m.set(Number(readFileSync(`/sys/class/net/${name}/ifindex`, "utf8")), name);
      } catch { /* went away meanwhile */ }
    }
  } catch { /* no sysfs: interfaces stay unnamed */ }
  return m;
}

/** Which endpoint and direction a report point stands for (pure, given the lookups). */
export function resolvePoint(p: ParsedPrefix, indev: string, outdev: string, endpointOf: (iface: string) => string | undefined): Pick<FlowPoint, "endpointKey" | "interfaceName" | "direction" | "verdict" | "decision" | "chain" | "index"> {
  const direction = INBOUND_CHAIN.test(p.chain) ? "inbound" : "outbound";
  // A point is judged on the workload's side of the packet: the sender's
  // interface for outbound, the receiver's for inbound. An ended
  // connection's reply packet goes the other way: a reply leaving a
  // workload is of a connection inbound to it, one reaching it of a
  // connection it opened.
  const reply = p.code === "e" && REPLY_ENDED_CHAIN.test(p.chain);
  const iface = (direction === "inbound") !== reply ? outdev : indev;
  const { verdict } = FLOW_CODES[p.code];
  let decision: FlowDecision = FLOW_CODES[p.code].decision;
  // The set-based layout's from-workload root cannot tell a foreign source
  // on an endpoint's interface from an interface without an endpoint (both
  // miss every class set; DESIGN §6.5): this interface map can.
  if (decision === "no-endpoint" && (p.chain === ENTRY_CHAINS.fromWorkload || FROM_GUARD_CHAIN.test(p.chain)) && endpointOf(iface) !== undefined) decision = "anti-spoofing";
  // A dispatch node's report is about an interface without an endpoint.
  const endpointKey = decision === "no-endpoint" ? "" : endpointOf(iface) ?? "";
  return { endpointKey, interfaceName: iface, direction, verdict, decision, chain: p.chain, index: p.n ?? -1 };
}

/** ICMP reply types conntrack tracks -> their request (echo, timestamp, information, address mask; ICMPv6 echo, node information). */
const ICMP_REQUEST_OF: Record<4 | 6, Record<number, number>> = { 4: { 0: 8, 14: 13, 16: 15, 18: 17 }, 6: { 129: 128, 140: 139 } };

/**
 * The connection's tuple from one of its reply packets: the record of an
 * ended connection says who opened it to whom, like every other record.
 */
export function originalTuple<T extends FlowTuple>(t: T): T {
  const icmpType = t.icmpType === undefined ? undefined : ICMP_REQUEST_OF[t.ipVersion][t.icmpType] ?? t.icmpType;
  return { ...t, src: t.dst, dst: t.src, srcPort: t.dstPort, dstPort: t.srcPort, icmpType };
}

/** Protocol names as `palisadectl flows -o json` prints them (a number when unnamed). */
function protocolName(n: number): string {
  if (n === 58) return "icmpv6";
  return Object.entries(PROTOCOL_NUMBERS).find(([, v]) => v === n)?.[0] ?? String(n);
}

/** One record as a JSON line of --flow-log-file: the fields of `flows -o json`, with chain and index instead of profile. */
export function recordJson(host: string, r: FlowRecord) {
  return {
    time: new Date(r.firstSeenUnixMs).toISOString(), last_seen: new Date(r.lastSeenUnixMs).toISOString(),
    host, endpoint: r.endpointKey, interface: r.interfaceName, direction: r.direction,
    src: r.src, dst: r.dst, protocol: protocolName(r.protocol), src_port: r.srcPort ?? null, dst_port: r.dstPort ?? null,
    icmp_type: r.icmpType ?? null, icmp_code: r.icmpCode ?? null, verdict: r.verdict, decision: r.decision,
    chain: r.chain, index: r.index, packets: r.packets, ...(r.revision !== undefined ? { revision: r.revision } : {}),
  };
}

export function startFlowReporter(o: FlowReportOptions, d: FlowReporterDeps): FlowReporter {
  const logger = d.logger;
  const agg = new FlowAggregator(o.maxKeys ?? FLOW_DEFAULTS.maxKeys);
  const dropped: Record<string, number> = {};
  /**
   * Drops not yet delivered to a controller (it sums them). A report that
   * could not be sent gives its counts back, so they go with the next one:
   * one counter per reason (a fixed set), so this never grows.
   */
  let unsent: Partial<Record<FlowDropReason, number>> = {};
  const drop = (reason: FlowDropReason, n = 1) => {
    if (n <= 0) return;
    dropped[reason] = (dropped[reason] ?? 0) + n;
    unsent[reason] = (unsent[reason] ?? 0) + n;
    d.metrics?.dropped.inc({ reason }, n);
  };
  let names = interfaceNames();
  let namesAt = Date.now();
  const nameOf = (index: number | undefined): string => {
    if (index === undefined || index === 0) return "";
    let n = names.get(index);
    // A new interface since the last scan: rescan, at most once a second.
    if (n === undefined && Date.now() - namesAt > 1_000) {
      names = interfaceNames();
      namesAt = Date.now();
      n = names.get(index);
    }
    return n ?? `if${index}`;
  };

  function onPacket(pkt: NflogPacket): void {
    const prefix = parseLogPrefix(pkt.prefix);
    const tuple = pkt.payload ? parseIpHeaders(pkt.payload) : undefined;
    if (!prefix || !tuple) {
      drop("unparsed");
      return;
    }
    // A bridged frame is the tap's, not the bridge's (pointInterfaces).
    const dev = pointInterfaces(pkt);
    const resolved = resolvePoint(prefix, nameOf(dev.indev), nameOf(dev.outdev), d.endpointOfInterface);
    let point: FlowPoint = { ...tuple, ...resolved };
    if (prefix.code === "e") {
      // An ended connection: told in its own direction, with the revision
      // whose epoch denied it (its "n").
      if (REPLY_ENDED_CHAIN.test(prefix.chain)) point = originalTuple(point);
      const revision = prefix.n === undefined ? undefined : d.revisionOfEpoch?.(tuple.ipVersion, prefix.n);
      if (revision !== undefined) point.revision = revision;
    }
    if (!agg.add(point, Math.round(pkt.timeMs))) drop("aggregator");
  }

  const reader = (d.startReader ?? startFlowReader)({
    group: FLOW_NFLOG_GROUP, logger, onPacket, tcpdump: o.tcpdump,
    onRestart: () => d.metrics?.readerRestarts.inc(),
    onMalformed: (n) => drop("unparsed", n),
  });

  let file: WriteStream | NodeJS.WriteStream | undefined;
  if (o.logFile === "-") file = process.stdout;
  else if (o.logFile) {
    file = createWriteStream(o.logFile, { flags: "a" });
    file.on("error", (err) => logger.error({ err: err.message, file: o.logFile }, "flow log file: cannot write; records are not written there"));
  }

  function flush(): void {
    const records = agg.drain();
    for (const r of records) {
      d.metrics?.flows.inc({ verdict: r.verdict, decision: r.decision });
      if (r.verdict === "deny") d.metrics?.denied.inc({ decision: r.decision }, r.packets);
    }
    if (file) {
      for (const r of records) {
        // Back-pressure: a log shipper that does not keep up loses lines
        // (counted); the driver never buffers without bound for it.
        if (file.writableNeedDrain) drop("file");
        else file.write(`${JSON.stringify(recordJson(d.hostname, r))}\n`);
      }
    }
    const lost = Object.keys(unsent).length > 0;
    if (records.length === 0 && !lost) return;
    const report: FlowReport = {
      records: records.map((r) => ({
        endpointKey: r.endpointKey, interfaceName: r.interfaceName, direction: r.direction, ipVersion: r.ipVersion,
        src: r.src, dst: r.dst, protocol: r.protocol, srcPort: r.srcPort, dstPort: r.dstPort, icmpType: r.icmpType, icmpCode: r.icmpCode,
        verdict: r.verdict, decision: r.decision, chain: r.chain, index: r.index, packets: r.packets,
        firstSeenUnixMs: r.firstSeenUnixMs, lastSeenUnixMs: r.lastSeenUnixMs, revision: r.revision,
      })),
      dropped: unsent,
    };
    const carried = unsent;
    unsent = {};
    if (!d.send(report)) {
      // Not delivered: the counts it carried stay owed (added to whatever
      // came meanwhile, not counted again: they were counted when dropped);
      // its records are lost, and counted.
      for (const [reason, n] of Object.entries(carried) as [FlowDropReason, number][]) unsent[reason] = (unsent[reason] ?? 0) + n;
      drop("disconnected", records.length);
    }
  }
  const windowTimer = setInterval(flush, o.windowMs ?? FLOW_DEFAULTS.windowMs);

  // Reports the rate limit suppressed: pal-log's counting rule, per family,
  // read every 10 s. A counter that went down means the chain was rewritten.
  const lastCount: Partial<Record<IpVersion, number>> = {};
  async function readLimited(): Promise<void> {
    for (const f of d.families) {
      try {
        const out = (await d.runner.run(d.iptables[f], ["-w", "5", "-t", "filter", "-L", FLOW_LOG_CHAINS.deny, "-n", "-v", "-x"])).stdout;
        const row = out.split("\n").filter((l) => /^\s*\d+\s+\d+/.test(l))[FLOW_LIMITED_RULE - 1];
        if (!row) continue;
        const n = Number(row.trim().split(/\s+/)[0]);
        const prev = lastCount[f];
        lastCount[f] = n;
        if (prev !== undefined) drop("rate-limit", n >= prev ? n - prev : n);
      } catch { /* chain not there yet (before the first apply) */ }
    }
  }
  const limitTimer = setInterval(() => void readLimited(), 10_000);
  void readLimited();

  return {
    reader,
    dropped,
    flush,
    async stop() {
      clearInterval(windowTimer);
      clearInterval(limitTimer);
      await reader.stop();
      flush();
      if (file && file !== process.stdout) (file as WriteStream).end();
    },
  };
}
