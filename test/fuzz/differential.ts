// The differential test: the model's verdict (the evaluator `trace` uses)
// against real packets through real iptables in network namespaces.
//
//   lab: hv1 and hv2 (routed link), three workloads on each, every workload
//        listening on LISTEN_PORTS (TCP accept, UDP echo) and answering ping
//   per case: apply the generated model through the real controller, wait
//        until both real drivers have applied it, probe every packet (all
//        at once, one process per source workload), compare with the oracle
//   flow records (DESIGN §6.12): for every probe the kernel denied, the
//        record the driver reported must name the decision, profile and rule
//        index the oracle's denying step names
//   mismatch: shrink greedily (drop rules, criteria, profile references,
//        tags) while the mismatch persists, then report seed + minimal model.
//        A denied packet that got through is a failure at once (fail open);
//        an allowed packet that was dropped is re-probed, and is a failure
//        only if every re-probe drops it too (else a TRANSIENT warning)
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import * as grpc from "@grpc/grpc-js";
import { call, createClients } from "../../services/contract/clients.js";
import { FlowServiceClient, type FlowRecord } from "../../services/gen/palisade/flow/v1/flow.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import { startController, type Controller } from "../../services/controller/controller.js";
import { createLab, type Lab, type LabTopology } from "../lab/lab.js";
import { createEvaluator, toDocument, type Endpoint, type Profile, type TraceResult } from "../../services/model/index.js";
import { LISTEN_PORTS, generateCase, type FuzzCase, type FuzzPacket, type LabWorkload } from "./generate.js";

export interface Mismatch {
  seed: number;
  /** verdict: the kernel's verdict differs; flow-record: the dropped packet's flow record disagrees with the oracle. */
  kind: "verdict" | "flow-record";
  /** For flow-record: what the record said (or that none came). */
  record?: string;
  /**
   * False only for a packet the model allows that was dropped and then got
   * through on a re-probe (an environmental blip, e.g. CPU starvation). A
   * packet the model denies that got through is always confirmed (fail open).
   */
  confirmed: boolean;
  packet: FuzzPacket;
  expected: "allow" | "deny";
  observed: string;
  trace: TraceResult;
  /** Minimal model still showing the mismatch, as YAML documents. */
  reproduction?: string;
}

const PROTO = { tcp: 6, udp: 17 } as const;

/**
 * Whether a packet whose outcome disagreed with the model is a failure.
 * Denied by the model but not dropped (answered, refused, any error but
 * silence): always — a fail-open is a failure whether or not it happens
 * again (a window that opens now and then is still a window), so it is never
 * re-probed into a warning. Allowed by the model but dropped: may be the lab
 * (a CPU-starved probe times out), so it is re-probed `reprobes` times with
 * the model unchanged and is a failure only if no re-probe agrees (else a
 * TRANSIENT warning).
 */
export async function isConfirmed(expected: "allow" | "deny", reprobeAgrees: () => Promise<boolean>, reprobes = 2): Promise<boolean> {
  if (expected === "deny") return true;
  for (let k = 0; k < reprobes; k++) if (await reprobeAgrees()) return false;
  return true;
}

export async function createDifferentialLab(opts: { etcdUrl: string; name: string; dir: string; logLevel?: string; topology?: LabTopology }) {
  mkdirSync(opts.dir, { recursive: true });
  const socket = join(opts.dir, "controller.sock");
  const controller: Controller = await startController({
    etcdEndpoints: [opts.etcdUrl], listen: `127.0.0.1:0,unix:${socket}`, etcdPrefix: `/${opts.name}`,
    logger: createLogger({ name: "fuzz-controller", level: opts.logLevel ?? "silent" }), statusTtlSeconds: 10, shutdownGraceMs: 500,
  });
  const clients = createClients(`127.0.0.1:${controller.port}`);
  const flowClient = new FlowServiceClient(`127.0.0.1:${controller.port}`, grpc.credentials.createInsecure());
  const lab: Lab = createLab(`${opts.name}-`, { topology: opts.topology ?? "routed" });
  const workloads: LabWorkload[] = [];
  try {
    await lab.addHypervisor("hv1");
    await lab.addHypervisor("hv2");
    await lab.link("hv1", "hv2");
    for (const [hv, names] of [["hv1", ["f1", "f2", "f3"]], ["hv2", ["f4", "f5", "f6"]]] as const) {
      for (const [i, name] of names.entries()) {
        const w = await lab.addWorkload(hv, { name, iface: `tap${name}`, host: 10 + i });
        await lab.listen(name, LISTEN_PORTS);
        workloads.push({ name, host: hv, iface: w.iface, ipv4: w.ipv4, ipv6: w.ipv6, mac: w.mac });
      }
      const driver = join(packageRoot(), "dist/services/driver/main.js");
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [driver, "--insecure", "--controller", `unix:${socket}`, "--hostname", hv], { logFile: join(opts.dir, `driver-${hv}.log`) });
    }
  } catch (e) {
    await lab.destroy();
    clients.close();
    flowClient.close();
    await controller.stop();
    throw e;
  }

  let udpPort = 33000;
  let applied: string[] = [];

  async function applyModel(profiles: Profile[], endpoints: Endpoint[]): Promise<void> {
    const docs = [...profiles.map((p) => ({ kind: "Profile" as const, profile: p })), ...endpoints.map((e) => ({ kind: "Endpoint" as const, endpoint: e }))];
    let rev = (await call(clients.policy, clients.policy.apply, { deletes: [], documents: docs.map(documentToPb) })).revision;
    const gone = applied.filter((id) => !profiles.some((p) => p.id === id));
    if (gone.length) {
      rev = (await call(clients.policy, clients.policy.delete, { objects: gone.map((id) => ({ kind: { $case: "profileId" as const, value: id } })), ignoreMissing: true })).revision;
    }
    applied = profiles.map((p) => p.id);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = await call(clients.status, clients.status.getStatus, {});
      const ok = ["hv1", "hv2"].every((h) => s.hosts.some((x) => x.hostname === h && x.inSync && x.appliedRevision >= rev && !x.lastError));
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`drivers did not apply revision ${rev} within 30s: ${JSON.stringify(s.hosts)}`);
      await new Promise((r) => setTimeout(r, 30));
    }
  }

  function wl(name: string): LabWorkload {
    return workloads.find((w) => w.name === name)!;
  }

  /** Oracle verdicts and real outcomes for packets under the applied model. */
  async function probe(profiles: Profile[], endpoints: Endpoint[], packets: FuzzPacket[]) {
    const oracle = createEvaluator({ profiles: new Map(profiles.map((p) => [p.id, p])), endpoints });
    const plans = packets.map((p) => {
      const dst = p.family === 4 ? wl(p.to).ipv4 : wl(p.to).ipv6;
      const src = p.family === 4 ? wl(p.from).ipv4 : wl(p.from).ipv6;
      const srcPort = p.proto === "udp" ? (udpPort = udpPort >= 60000 ? 33000 : udpPort + 1) : 40000;
      const trace = oracle.trace(p.proto === "icmp"
        ? { src, dst, protocol: p.family === 4 ? 1 : 58, icmpType: p.family === 4 ? 8 : 128, icmpCode: 0 }
        : { src, dst, protocol: PROTO[p.proto], srcPort, dstPort: p.port });
      return { p, trace, src, dst, probe: { proto: p.proto, dst, port: p.port, srcPort: p.proto === "udp" ? srcPort : undefined } };
    });
    const bySource = new Map<string, number[]>();
    plans.forEach((x, i) => bySource.set(x.p.from, [...(bySource.get(x.p.from) ?? []), i]));
    const observed: string[] = new Array(plans.length);
    await Promise.all([...bySource].map(async ([from, idx]) => {
      const res = await lab.probeMany(from, idx.map((i) => plans[i]!.probe), 800);
      idx.forEach((i, k) => { observed[i] = res[k]!; });
    }));
    return plans.map((x, i) => ({ packet: x.p, trace: x.trace, observed: observed[i]!, src: x.src, dst: x.dst, srcPort: x.probe.srcPort }));
  }

  const agrees = (expected: "allow" | "deny", observed: string) =>
    (expected === "allow" && (observed === "open" || observed === "refused")) || (expected === "deny" && observed === "timeout");

  function listFlows(sinceUnixMs: number): Promise<FlowRecord[]> {
    return new Promise((resolve, reject) => flowClient.list({ filter: { host: "", endpoint: "", verdict: "deny", sinceUnixMs }, limit: 10_000 }, (err, res) => (err ? reject(err) : resolve(res.records))));
  }

  /** The record of one dropped probe (by addresses, protocol, destination port or ICMP echo). */
  function recordOf(records: FlowRecord[], x: { p: FuzzPacket; src: string; dst: string; srcPort?: number }): FlowRecord | undefined {
    const proto = x.p.proto === "icmp" ? (x.p.family === 4 ? 1 : 58) : PROTO[x.p.proto];
    return records.find((r) => r.src === x.src && r.dst === x.dst && r.protocol === proto
      && (x.p.proto === "icmp" ? r.icmpType === (x.p.family === 4 ? 8 : 128) : r.dstPort === x.p.port)
      && (x.srcPort === undefined || r.srcPort === x.srcPort));
  }

  /**
   * What the oracle says the record of a dropped packet must say: the
   * denying step's endpoint, direction, decision, profile and rule index
   * (trace's words). Undefined when they agree.
   */
  function recordDisagrees(trace: TraceResult, r: FlowRecord | undefined): string | undefined {
    const step = trace.steps.find((s) => s.verdict === "deny");
    if (!step) return undefined;
    const d = step.decision;
    const want = {
      endpoint: step.endpoint, direction: step.direction, decision: d.kind,
      profile: "profile" in d ? d.profile : "", rule_index: d.kind === "rule" ? d.ruleIndex : -1,
    };
    if (!r) return `no flow record (expected ${JSON.stringify(want)})`;
    const got = { endpoint: r.endpoint, direction: r.direction, decision: r.decision, profile: r.profile, rule_index: r.ruleIndex };
    return JSON.stringify(got) === JSON.stringify(want) ? undefined : `record ${JSON.stringify(got)}, oracle ${JSON.stringify(want)}`;
  }

  /** Flow-record checks for the probes the kernel dropped (waits for the drivers' windows to arrive). */
  async function checkRecords(results: { packet: FuzzPacket; trace: TraceResult; observed: string; src: string; dst: string; srcPort?: number }[], since: number) {
    const dropped = results.filter((r) => r.observed === "timeout" && r.trace.verdict === "deny");
    const out = new Map<number, string>();
    if (dropped.length === 0) return out;
    const deadline = Date.now() + 6_000;
    let records: FlowRecord[] = [];
    for (;;) {
      records = await listFlows(since);
      if (dropped.every((x) => recordOf(records, { p: x.packet, src: x.src, dst: x.dst, srcPort: x.srcPort })) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    dropped.forEach((x) => {
      const why = recordDisagrees(x.trace, recordOf(records, { p: x.packet, src: x.src, dst: x.dst, srcPort: x.srcPort }));
      if (why) out.set(results.indexOf(x), why);
    });
    return out;
  }

  /** Greedy shrink: keep any simplification under which the packet still disagrees. */
  async function shrink(c: FuzzCase, packet: FuzzPacket, kind: Mismatch["kind"] = "verdict"): Promise<{ profiles: Profile[]; endpoints: Endpoint[] }> {
    let profiles = structuredClone(c.profiles);
    let endpoints = structuredClone(c.endpoints);
    const stillBad = async (ps: Profile[], es: Endpoint[]) => {
      await applyModel(ps, es);
      const since = Date.now() - 1_000;
      const [r] = await probe(ps, es, [packet]);
      if (kind === "verdict") return !agrees(r!.trace.verdict, r!.observed);
      // A flow-record mismatch persists while the packet is still dropped as
      // the model says and its record still disagrees.
      return agrees(r!.trace.verdict, r!.observed) && r!.observed === "timeout" && (await checkRecords([r!], since)).size > 0;
    };
    const candidates = function* (): Generator<[Profile[], Endpoint[]]> {
      // Endpoints that are neither source nor destination.
      for (let i = 0; i < endpoints.length; i++) {
        if (endpoints[i]!.workload !== packet.from && endpoints[i]!.workload !== packet.to) yield [profiles, endpoints.filter((_, j) => j !== i)];
      }
      // Profiles no endpoint references.
      for (let i = 0; i < profiles.length; i++) {
        if (!endpoints.some((e) => e.profileIds.includes(profiles[i]!.id))) yield [profiles.filter((_, j) => j !== i), endpoints];
      }
      for (let i = 0; i < endpoints.length; i++) {
        for (let j = 0; j < endpoints[i]!.profileIds.length; j++) {
          const es = structuredClone(endpoints);
          es[i]!.profileIds.splice(j, 1);
          yield [profiles, es];
        }
      }
      for (let i = 0; i < profiles.length; i++) {
        for (const dir of ["inboundRules", "outboundRules"] as const) {
          for (let j = 0; j < profiles[i]![dir].length; j++) {
            const ps = structuredClone(profiles);
            ps[i]![dir].splice(j, 1);
            yield [ps, endpoints];
            for (const side of ["match", "negated"] as const) {
              for (const k of Object.keys(profiles[i]![dir][j]![side])) {
                const ps2 = structuredClone(profiles);
                delete (ps2[i]![dir][j]![side] as Record<string, unknown>)[k];
                yield [ps2, endpoints];
              }
            }
          }
        }
        for (let t = 0; t < profiles[i]!.tags.length; t++) {
          const ps = structuredClone(profiles);
          ps[i]!.tags.splice(t, 1);
          yield [ps, endpoints];
        }
      }
    };
    let progress = true;
    let budget = 150;
    while (progress && budget > 0) {
      progress = false;
      for (const [ps, es] of candidates()) {
        if (--budget <= 0) break;
        // Criteria removals can make a rule invalid (e.g. ports without protocol): skip those.
        const { validateObject } = await import("../../services/model/index.js");
        if (ps.some((p) => validateObject({ kind: "Profile", profile: p }).length)) continue;
        if (await stillBad(ps, es)) {
          profiles = ps;
          endpoints = es;
          progress = true;
          break;
        }
      }
    }
    return { profiles, endpoints };
  }

  return {
    workloads,
    async runCase(seed: number, opts2: { packets?: number; shrink?: boolean } = {}): Promise<{ packets: number; allowed: number; mismatches: Mismatch[]; recordsChecked: number }> {
      const c = generateCase(seed, workloads, { packets: opts2.packets });
      await applyModel(c.profiles, c.endpoints);
      // Records are kept per flow: only those seen from now on belong to this case.
      const since = Date.now() - 500;
      const results = await probe(c.profiles, c.endpoints, c.packets);
      const mismatches: Mismatch[] = [];
      const recordIssues = await checkRecords(results, since);
      for (const r of results) {
        if (agrees(r.trace.verdict, r.observed)) continue;
        // The model is static while probing, so a real disagreement repeats;
        // but a fail-open is a failure even if it does not (isConfirmed).
        const confirmed = await isConfirmed(r.trace.verdict, async () => {
          const [again] = await probe(c.profiles, c.endpoints, [r.packet]);
          return agrees(again!.trace.verdict, again!.observed);
        });
        const m: Mismatch = { seed, kind: "verdict", confirmed, packet: r.packet, expected: r.trace.verdict, observed: r.observed, trace: r.trace };
        if (confirmed && opts2.shrink !== false && !mismatches.some((x) => x.confirmed)) {
          const min = await shrink(c, r.packet);
          m.reproduction = [...min.profiles.map((p) => toDocument({ kind: "Profile", profile: p })), ...min.endpoints.map((e) => toDocument({ kind: "Endpoint", endpoint: e }))]
            .map((d) => stringify(d)).join("---\n");
        }
        mismatches.push(m);
      }
      // The flow records of the packets the kernel dropped (as the model said).
      let recordMismatch = false;
      for (const [i, why] of recordIssues) {
        const r = results[i]!;
        if (!agrees(r.trace.verdict, r.observed)) continue; // already a verdict mismatch
        const m: Mismatch = { seed, kind: "flow-record", confirmed: true, packet: r.packet, expected: r.trace.verdict, observed: r.observed, trace: r.trace, record: why };
        if (opts2.shrink !== false && !recordMismatch && !mismatches.some((x) => x.confirmed)) {
          recordMismatch = true;
          const min = await shrink(c, r.packet, "flow-record");
          m.reproduction = [...min.profiles.map((p) => toDocument({ kind: "Profile", profile: p })), ...min.endpoints.map((e) => toDocument({ kind: "Endpoint", endpoint: e }))]
            .map((d) => stringify(d)).join("---\n");
        }
        mismatches.push(m);
      }
      return {
        packets: results.length, allowed: results.filter((r) => r.trace.verdict === "allow").length, mismatches,
        recordsChecked: results.filter((r) => r.observed === "timeout" && r.trace.verdict === "deny").length,
      };
    },
    async close(): Promise<void> {
      await lab.destroy();
      clients.close();
      flowClient.close();
      await controller.stop();
    },
  };
}

export function describeMismatch(m: Mismatch): string {
  const p = m.packet;
  const what = m.kind === "flow-record"
    ? `dropped as the model says, but its flow record disagrees: ${m.record}`
    : `model says ${m.expected}, kernel ${m.observed === "timeout" ? "dropped" : `answered (${m.observed})`}`;
  return [
    `${m.confirmed ? "MISMATCH" : "TRANSIENT (not reproduced on re-probe)"} seed=${m.seed}: ${p.proto}${p.proto === "icmp" ? "" : `/${p.port}`} IPv${p.family} ${p.from} -> ${p.to}: ${what}`,
    `  trace: ${JSON.stringify(m.trace.steps)}`,
    m.reproduction ? `  minimal reproduction (apply, then send the packet above):\n${m.reproduction.replace(/^/gm, "    ")}` : "",
  ].join("\n");
}
