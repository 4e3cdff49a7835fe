// palisadectl flows: what the dataplane reported denying (and, on hosts with
// --flow-logs all, admitting), tied to what decided it, and the open
// connections a revision ended, with that revision (DESIGN §6.12).
// Every replica serves the hosts connected to it; given several controller
// addresses (--controller a,b) the answers are merged.
import * as grpc from "@grpc/grpc-js";
import { Command, Option } from "commander";
import { CLIENT_OPTIONS } from "../contract/clients.js";
import { rpcErrorOf, type RpcError } from "../contract/errors.js";
import { UsageError, parseHostPort } from "../runtime/cli-env.js";
import { formatTable } from "../runtime/cli-table.js";
import { channelCredentials, loadTls, tlsFlagsOf, warnIfPlaintextRemote } from "../runtime/tls.js";
import { FlowServiceClient, type FlowFilter, type FlowRecord, type ListResponse, type WatchResponse } from "../contract/flow.js";
import { ID_RE, PROTOCOL_NUMBERS, parseEndpointKey } from "../model/index.js";
import { decidedBy } from "./decided-by.js";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "5m", "1h30m", "250ms" → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(ms|s|m|h|d))+$/.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}

function protocolName(n: number): string {
  if (n === 58) return "icmpv6";
  return Object.entries(PROTOCOL_NUMBERS).find(([, v]) => v === n)?.[0] ?? String(n);
}

/** The record as `flows -o json` prints it (the brief's field names; trace's words). */
export function flowJson(r: FlowRecord) {
  return {
    time: new Date(r.firstSeenUnixMs).toISOString(),
    last_seen: new Date(r.lastSeenUnixMs).toISOString(),
    host: r.host,
    endpoint: r.endpoint || null,
    // Only where the endpoint has one (the brief's record; DESIGN §2.10).
    ...(r.network ? { network: r.network } : {}),
    interface: r.interfaceName,
    direction: r.direction,
    src: r.src,
    dst: r.dst,
    protocol: protocolName(r.protocol),
    src_port: r.srcPort ?? null,
    dst_port: r.dstPort ?? null,
    icmp_type: r.icmpType ?? null,
    icmp_code: r.icmpCode ?? null,
    verdict: r.verdict,
    decision: r.decision,
    profile: r.profile || null,
    rule_index: r.ruleIndex >= 0 ? r.ruleIndex : null,
    packets: r.packets,
    chain: r.chain,
    // An ended (revoked) connection: the revision that ended it, when known.
    ...(r.decision === "ended" ? { revision: r.revision ?? null } : {}),
  };
}

function endpointText(r: FlowRecord): string {
  if (!r.endpoint) return `${r.host} ${r.interfaceName} (no endpoint)`;
  return r.network ? `${r.endpoint} (network ${r.network})` : r.endpoint;
}

function flowText(r: FlowRecord): string {
  const p = protocolName(r.protocol);
  const at = (a: string, port?: number) => (port === undefined ? a : a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`);
  const icmp = r.icmpType !== undefined ? ` type ${r.icmpType}/${r.icmpCode ?? 0}` : "";
  return `${p} ${at(r.src, r.srcPort)} -> ${at(r.dst, r.dstPort)}${icmp}`;
}

function tableRow(r: FlowRecord): string[] {
  return [
    new Date(r.lastSeenUnixMs).toISOString().replace(/\.\d+Z$/, "Z"), r.verdict.toUpperCase(), r.direction, endpointText(r), flowText(r),
    String(r.packets), r.decision === "ended" ? endedBy(r) : decidedBy({ direction: r.direction, decision: r.decision, profile: r.profile, ruleIndex: r.ruleIndex }),
  ];
}

/** An open connection a revision revoked (DESIGN §6.14). */
function endedBy(r: FlowRecord): string {
  return r.revision === undefined ? "connection ended: revoked" : `connection ended: revoked by revision ${r.revision}`;
}

const HEADER = ["LAST-SEEN", "VERDICT", "DIRECTION", "ENDPOINT", "FLOW", "PACKETS", "DECIDED BY"];

const table = formatTable;

/** Several replicas may hold records of one flow (a host moved): one record, packets summed. */
export function mergeRecords(lists: FlowRecord[][]): FlowRecord[] {
  const byKey = new Map<string, FlowRecord>();
  for (const list of lists) {
    for (const r of list) {
      const k = [r.host, r.endpoint, r.interfaceName, r.direction, r.src, r.dst, r.protocol, r.srcPort, r.dstPort, r.icmpType, r.icmpCode, r.verdict, r.decision, r.chain, r.ruleIndex, r.revision ?? ""].join("|");
      const o = byKey.get(k);
      if (!o) byKey.set(k, { ...r });
      else {
        o.packets += r.packets;
        o.firstSeenUnixMs = Math.min(o.firstSeenUnixMs, r.firstSeenUnixMs);
        o.lastSeenUnixMs = Math.max(o.lastSeenUnixMs, r.lastSeenUnixMs);
      }
    }
  }
  return [...byKey.values()].sort((a, b) => a.lastSeenUnixMs - b.lastSeenUnixMs);
}

/** The one client error type (DESIGN §3.7), naming the replica that failed. */
function rpcError(err: grpc.ServiceError, address: string): RpcError {
  return rpcErrorOf(err, address);
}

interface FlowsOptions {
  watch?: boolean; host?: string; endpoint?: string; verdict?: string; since?: string; limit?: string; output: string;
}

export function addFlowsCommand(program: Command): void {
  program.command("flows")
    .description("new flows the dataplane denied (and, with --flow-logs all, admitted), and what decided them")
    .option("-w, --watch", "keep streaming records as they arrive")
    .option("--host <host>", "only this host")
    .option("--endpoint <key>", "only this endpoint, HOST/ORCH/WORKLOAD/ID")
    .addOption(new Option("--verdict <verdict>", "only allow or deny").choices(["allow", "deny"]))
    .option("--since <duration>", "only records seen within this long, e.g. 90s, 5m, 1h30m")
    .option("--limit <n>", "at most N records (the newest), 1-10000", "100")
    .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
    .action(async (o: FlowsOptions) => {
      // Validate everything before talking to anyone (exit 2 on usage errors).
      const addresses = program.opts<{ controller: string }>().controller.split(",").map((a) => a.trim()).filter(Boolean);
      if (!addresses.length) throw new UsageError("--controller: at least one address is required");
      for (const a of addresses) parseHostPort(a, "--controller");
      const filter: FlowFilter = { host: "", endpoint: "", verdict: o.verdict ?? "", sinceUnixMs: 0 };
      if (o.host !== undefined) {
        if (!ID_RE.test(o.host) || o.host.length > 253) throw new UsageError(`--host: invalid host name '${o.host}'`);
        filter.host = o.host;
      }
      if (o.endpoint !== undefined) {
        const k = parseEndpointKey(o.endpoint);
        if (!k || ![k.host, k.orchestrator, k.workload, k.id].every((p) => ID_RE.test(p))) throw new UsageError(`--endpoint must be HOST/ORCH/WORKLOAD/ID, got '${o.endpoint}'`);
        filter.endpoint = o.endpoint;
      }
      if (o.since !== undefined) {
        const ms = parseDuration(o.since);
        if (ms === undefined) throw new UsageError(`--since must be a duration such as 90s, 5m or 1h30m, got '${o.since}'`);
        filter.sinceUnixMs = Date.now() - ms;
      }
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError("--limit must be an integer 1-10000");

      const tls = loadTls(tlsFlagsOf(program));
      const creds = channelCredentials(tls);
      const clients = addresses.map((address) => {
        warnIfPlaintextRemote(tls, address, "palisadectl");
        return { address, client: new FlowServiceClient(address, creds, CLIENT_OPTIONS) };
      });
      const closeAll = () => { for (const c of clients) c.client.close(); };

      const list = () => Promise.all(clients.map(({ address, client }) => new Promise<ListResponse>((resolve, reject) => {
        client.list({ filter, limit }, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(rpcError(err, address)) : resolve(res)));
      })));
      const newest = (records: FlowRecord[]) => records.slice(Math.max(0, records.length - limit));
      const print = (records: FlowRecord[], header: boolean) => {
        if (o.output === "json") {
          for (const r of records) process.stdout.write(`${JSON.stringify(flowJson(r))}\n`);
        } else if (records.length || header) {
          const rows = records.map(tableRow);
          process.stdout.write(header ? table([HEADER, ...rows]) : table(rows));
        }
      };

      if (!o.watch) {
        const answers = await list();
        closeAll();
        const records = newest(mergeRecords(answers.map((a) => a.records)));
        if (o.output === "json") process.stdout.write(`${JSON.stringify(records.map(flowJson), null, 2)}\n`);
        else if (records.length) process.stdout.write(table([HEADER, ...records.map(tableRow)]));
        else process.stdout.write("no flow records\n");
        return;
      }

      // --watch: the recent records first, then every record as it arrives,
      // from every replica (one line each; JSON: one object per line).
      const initial = newest(mergeRecords((await list()).map((a) => a.records)));
      print(initial, o.output !== "json");
      await new Promise<void>((_resolve, reject) => {
        for (const { address, client } of clients) {
          const stream = client.watch({ filter });
          stream.on("data", (m: WatchResponse) => {
            print(m.records, false);
            if (m.dropped > 0) process.stderr.write(`palisadectl: ${address}: ${m.dropped} record(s) not delivered (reading too slowly)\n`);
          });
          stream.on("error", (err: grpc.ServiceError) => {
            if (err.code === grpc.status.CANCELLED) return;
            closeAll();
            reject(rpcError(err, address));
          });
        }
      });
    });
}
