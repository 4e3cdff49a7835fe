// Flow reports with real packets (DESIGN §6.12): real controller replicas,
// real driver binaries in hypervisor namespaces, real NFLOG, real tcpdump.
// Every decision kind on both families; allowed new flows with
// --flow-logs all (and not without); only new flows; the per-host rate
// limit; a reader crash (restarted, policy unaffected); the JSON-lines file;
// `palisadectl flows` (filters, usage errors, several replicas merged) in
// the words of `palisadectl trace`. On both lab topologies (test/lab/lab.ts):
// routed taps, and taps that are ports of a Linux bridge (a bridged frame's
// record names its tap, DESIGN §6.12).
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLab, type Lab, type LabTopology } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, palisadectl, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type Ctrl = Awaited<ReturnType<typeof startTestController>>;
type Fam = 4 | 6;
const FAMS: Fam[] = [4, 6];

const dir = mkdtempSync(join(tmpdir(), "palisade-flows-"));
let sockA = "";
let sockB = "";
let flowFile = "";
const METRICS = "127.0.0.1:9464"; // inside each hypervisor namespace: no clash with the machine
let lab: Lab;
let A: Ctrl | undefined;
let B: Ctrl | undefined;
let drivers: Record<string, ReturnType<Lab["spawnIn"]>> = {};

const HV1: Record<Fam, string> = { 4: "198.18.1.1", 6: "2001:db8:1::1" };
const SPOOF: Record<Fam, string> = { 4: "198.18.1.99", 6: "2001:db8:1::99" };

interface FlowJson {
  time: string; last_seen: string; host: string; endpoint: string | null; interface: string; direction: string;
  src: string; dst: string; protocol: string; src_port: number | null; dst_port: number | null;
  icmp_type: number | null; icmp_code: number | null; verdict: string; decision: string;
  profile: string | null; rule_index: number | null; packets: number; network?: string;
}

const profile = (id: string, inbound: Record<string, unknown>[], outbound: Record<string, unknown>[]) =>
  ({ kind: "Profile", id, tags: [], inbound_rules: inbound, outbound_rules: outbound });

function endpoint(name: string, profiles: string[], extra: Record<string, unknown> = {}) {
  const w = lab.workloads.get(name)!;
  return {
    kind: "Endpoint", host: w.hypervisor, orchestrator: "fl", workload: w.name, id: "eth0", name: w.iface, state: "active",
    mac: w.mac, ipv4_nets: [`${w.ipv4}/32`], ipv6_nets: [`${w.ipv6}/128`], profile_ids: profiles, ...extra,
  };
}
const key = (name: string) => `${lab.workloads.get(name)!.hypervisor}/fl/${name}/eth0`;
const addr = (name: string, f: Fam) => (f === 4 ? lab.workloads.get(name)!.ipv4 : lab.workloads.get(name)!.ipv6);

let lastStatus = "";
async function apply(ctrl: Ctrl, docs: unknown[], hosts: string[]): Promise<number> {
  const r = await call(ctrl.clients.policy, ctrl.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) });
  // Each host is asked about on the replica serving it (hv3: B).
  await eventually(async () => {
    for (const h of hosts) {
      const c = h === "hv3" ? B! : A!;
      const s = await call(c.clients.status, c.clients.status.getStatus, {});
      if (!s.hosts.some((x) => x.hostname === h && x.inSync && x.appliedRevision >= r.revision)) { lastStatus = JSON.stringify(s.hosts); return false; }
    }
    return true;
  }, { timeoutMs: 30_000, intervalMs: 25, what: `${hosts} at ${r.revision}` }).catch((e: Error) => { throw new Error(`${e.message}; last status: ${lastStatus}`); });
  return r.revision;
}

async function flows(args: string[], controller = A!.address): Promise<FlowJson[]> {
  const r = await palisadectl(controller, ["flows", "-o", "json", ...args]);
  if (r.code !== 0) throw new Error(`palisadectl flows failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as FlowJson[];
}

/** Waits for a record matching `pred` (records take a window of about a second to arrive). */
async function record(args: string[], pred: (r: FlowJson) => boolean, what: string, controller?: string): Promise<FlowJson> {
  return (await eventually(async () => (await flows(args, controller)).find(pred), { timeoutMs: 15_000, intervalMs: 250, what }))!;
}

async function trace(src: string, dst: string, port: number) {
  const r = await palisadectl(A!.address, ["trace", "--from", src, "--to", dst, "--protocol", "tcp", "--dst-port", String(port), "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { verdict: string; steps: { direction: string; endpoint: string; verdict: string; decision: string; profile?: string; rule_index?: number }[] };
}

function startDriver(hv: string, socket: string, extra: string[]): void {
  drivers[hv] = lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath,
    [BIN.driver, "--insecure", "--controller", `unix:${socket}`, "--hostname", hv, "--metrics-listen", METRICS, ...extra],
    { logFile: join(dir, `driver-${lab.topology}-${hv}.log`) });
}

async function metric(hv: string, name: string): Promise<number> {
  const text = await lab.exec(lab.hypervisors.get(hv)!.ns, "curl", ["-s", `http://${METRICS}/metrics`]);
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.split(" ").at(-1));
  return sum;
}

/** PIDs of the children of a process (the driver's tcpdump). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
function tcpdumpOf(hv: string): number | undefined {
  return children(drivers[hv]!.pid!).find((p) => {
    try { return readFileSync(`/proc/${p}/comm`, "utf8").trim() === "tcpdump"; } catch { return false; }
  });
}

const TOPOLOGIES: LabTopology[] = ["routed", "bridged"];
for (const topology of TOPOLOGIES) describe(`flow reports (${topology} taps): what the dataplane denies (and allows), tied to the rule that decided`, () => {
  beforeAll(async () => {
    requireBuild();
    sockA = join(dir, `${topology}-a.sock`);
    sockB = join(dir, `${topology}-b.sock`);
    flowFile = join(dir, `${topology}-flows-hv1.jsonl`);
    drivers = {};
    lab = createLab(`${uniqueName(topology === "routed" ? "flw" : "flb")}-`, { topology });
    await lab.addHypervisor("hv1");
    await lab.addHypervisor("hv2");
    await lab.addHypervisor("hv3");
    await lab.link("hv1", "hv2");
    await lab.addWorkload("hv1", { name: "a", iface: "tapa", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapb", host: 11 });
    await lab.addWorkload("hv1", { name: "c", iface: "tapc", host: 12 });
    await lab.addWorkload("hv1", { name: "n", iface: "tapn", host: 13 }); // never gets an endpoint
    await lab.addWorkload("hv1", { name: "i", iface: "tapi", host: 14 }); // inactive
    await lab.addWorkload("hv2", { name: "x", iface: "tapx", host: 20 });
    await lab.addWorkload("hv2", { name: "y", iface: "tapy", host: 21 });
    await lab.addWorkload("hv3", { name: "h", iface: "taph", host: 30 });
    await lab.addWorkload("hv3", { name: "k", iface: "tapk", host: 31 });
    await Promise.all(["a", "b", "n", "i", "x", "y", "k"].map((w) => lab.listen(w, [80, 81, 82])));
    const hv1 = lab.hypervisors.get("hv1")!.ns;
    await lab.hostAddress("hv1", HV1[4], HV1[6]);
    await lab.listenIn(hv1, [7000]);
    // c also holds an address that is not its own: only anti-spoofing stops it.
    const c = lab.workloads.get("c")!;
    await lab.exec(c.ns, "ip", ["addr", "add", `${SPOOF[4]}/32`, "dev", "eth0"]);
    await lab.exec(c.ns, "ip", ["-6", "addr", "add", `${SPOOF[6]}/128`, "dev", "eth0", "nodad"]);
    if (topology === "bridged") {
      // On a bridge, a tap without an endpoint cannot answer neighbour
      // discovery (every frame from it is dropped, as it should be), so a
      // would never send the IPv6 packet the no-endpoint record is about:
      // a is told n's MAC. (ARP is not IP: IPv4 needs no help.)
      const n = lab.workloads.get("n")!;
      await lab.exec(lab.workloads.get("a")!.ns, "ip", ["-6", "neigh", "replace", n.ipv6, "lladdr", n.mac, "dev", "eth0", "nud", "permanent"]);
      // Likewise c's neighbour solicitation from the spoofed address is
      // dropped (anti-spoofing, and reported so): c is told b's MAC, so that
      // its spoofed TCP packet is sent and judged too.
      const b = lab.workloads.get("b")!;
      await lab.exec(c.ns, "ip", ["-6", "neigh", "replace", b.ipv6, "lladdr", b.mac, "dev", "eth0", "nud", "permanent"]);
    }

    A = await startTestController({ socket: sockA, extra: { replicaId: "flows-a" } });
    // A second replica on the same model: hv3 connects to it.
    B = await startTestController({ socket: sockB, prefix: A.prefix, extra: { replicaId: "flows-b" } });
    startDriver("hv1", sockA, ["--flow-logs", "all", "--flow-log-file", flowFile]);
    startDriver("hv2", sockA, []); // --flow-logs denied (the default)
    startDriver("hv3", sockB, ["--flow-log-rate", "5", "--flow-log-burst", "5"]);
    await apply(A, [
      profile("open", [{}], [{}]),
      // 80 allowed (rule 0), 81 denied (rule 1), anything else: default deny.
      profile("fl-db", [{ action: "allow", protocol: "tcp", dst_ports: [80] }, { action: "deny", protocol: "tcp", dst_ports: [81] }], [{}]),
      profile("fl-partial", [{ action: "allow", protocol: "tcp", dst_ports: [80] }], [{}]),
      endpoint("a", ["open"]), endpoint("b", ["fl-db"]), endpoint("c", ["open"]), endpoint("i", ["open"], { state: "inactive" }),
      endpoint("x", ["open"]), endpoint("y", ["fl-partial", "fl-ghost"], { network: "fl-net" }),
      endpoint("h", ["open"]), endpoint("k", ["fl-partial"]),
    ], ["hv1", "hv2", "hv3"]);
  }, 120_000);

  afterAll(async () => {
    // The readers die with their drivers, even SIGKILLed ones (destroy()
    // kills with SIGKILL): no tcpdump may outlive the lab.
    const readers = Object.keys(drivers).map(tcpdumpOf).filter((p) => p !== undefined);
    try {
      await lab?.destroy();
    } finally {
      await Promise.allSettled([A?.stop(), B?.stop()]);
    }
    expect(readers.length).toBe(3);
    const alive = () => readers.filter((p) => { try { process.kill(p, 0); return true; } catch { return false; } });
    await eventually(async () => alive().length === 0, { timeoutMs: 5_000, what: `tcpdump ${alive().join(",")} still running` });
  });

  it("reports every kind of denial on both families, with the decision, profile and rule index trace gives", async () => {
    const probes = FAMS.flatMap((f) => [
      { from: "a", dst: addr("b", f), port: 81, f },
      { from: "a", dst: addr("b", f), port: 82, f },
      { from: "a", dst: addr("y", f), port: 81, f },
      { from: "a", dst: addr("i", f), port: 80, f },
      { from: "a", dst: addr("n", f), port: 80, f },
      { from: "a", dst: HV1[f], port: 7000, f },
      { from: "a", dst: addr("b", f), port: 80, f }, // admitted: the positive control
    ]);
    const res = await lab.probeMany("a", probes.map((p) => ({ proto: "tcp" as const, dst: p.dst, port: p.port })), 1000);
    expect(res).toEqual(probes.map((p) => (p.port === 80 && p.dst === addr("b", p.f) ? "open" : "timeout")));
    const spoof = await lab.probeMany("c", FAMS.map((f) => ({ proto: "tcp" as const, dst: addr("b", f), port: 80, src: SPOOF[f] })), 1000);
    expect(spoof).toEqual(["timeout", "timeout"]);

    for (const f of FAMS) {
      const src = addr("a", f);
      const expectDenial = async (host: string, dst: string, port: number, want: Partial<FlowJson>) => {
        const r = await record(["--host", host, "--verdict", "deny"], (x) => x.src === src && x.dst === dst && x.dst_port === port, `${want.decision} v${f}`);
        expect(r).toMatchObject({ verdict: "deny", protocol: "tcp", ...want });
        return r;
      };
      // Decisions trace can explain: the record says what trace says.
      for (const [dst, port, host] of [[addr("b", f), 81, "hv1"], [addr("b", f), 82, "hv1"], [addr("y", f), 81, "hv2"], [addr("i", f), 80, "hv1"]] as const) {
        const t = await trace(src, dst, port);
        const step = t.steps.find((s) => s.verdict === "deny")!;
        const r = await expectDenial(host, dst, port, { direction: step.direction, endpoint: step.endpoint, decision: step.decision });
        expect({ profile: r.profile, rule_index: r.rule_index }).toEqual({ profile: step.profile ?? null, rule_index: step.rule_index ?? null });
      }
      // The three kinds trace has no step for.
      await expectDenial("hv1", addr("n", f), 80, { direction: "inbound", endpoint: null, interface: "tapn", decision: "no-endpoint", profile: null, rule_index: null });
      await expectDenial("hv1", HV1[f], 7000, { direction: "outbound", endpoint: key("a"), decision: "workload-to-host", profile: null });
      const s = await record(["--host", "hv1", "--endpoint", key("c")], (x) => x.src === SPOOF[f] && x.dst === addr("b", f), `anti-spoofing v${f}`);
      expect(s).toMatchObject({ verdict: "deny", direction: "outbound", decision: "anti-spoofing", endpoint: key("c"), dst: addr("b", f) });
    }
    // Spot checks of the words: explicit deny is rule 1 of fl-db; the missing profile is the second one.
    const deny = (await flows(["--host", "hv1", "--endpoint", key("b"), "--verdict", "deny"])).filter((r) => r.dst_port === 81);
    expect(deny.map((r) => [r.decision, r.profile, r.rule_index])).toEqual([["rule", "fl-db", 1], ["rule", "fl-db", 1]]);
    const ghost = (await flows(["--host", "hv2", "--verdict", "deny"])).filter((r) => r.dst_port === 81);
    expect(ghost.map((r) => [r.decision, r.profile])).toEqual([["missing-profile", "fl-ghost"], ["missing-profile", "fl-ghost"]]);
    // y is on a network: its records say so; b's (default network) carry no network.
    expect(ghost.map((r) => r.network)).toEqual(["fl-net", "fl-net"]);
    expect(deny.map((r) => "network" in r)).toEqual([false, false]);
  });

  it("with --flow-logs all, admitted new flows are reported with their allow rules, once per flow (never established traffic); without it, not at all", async () => {
    for (const f of FAMS) {
      const before = Date.now();
      expect(await lab.probeTcp("a", "b", 80, { family: f })).toBe("open"); // an established exchange follows the SYN
      const src = addr("a", f);
      const allowed = () => flows(["--host", "hv1", "--verdict", "allow", "--since", "60s"]);
      const mine = (rs: FlowJson[]) => rs.filter((r) => r.src === src && r.dst === addr("b", f) && r.dst_port === 80 && Date.parse(r.last_seen) >= before - 1000);
      const rs = (await eventually(async () => { const x = mine(await allowed()); return x.length >= 2 ? x : undefined; }, { timeoutMs: 15_000, what: `allowed v${f}` }))!;
      const bySide = Object.fromEntries(rs.map((r) => [r.direction, r]));
      expect(bySide.outbound).toMatchObject({ verdict: "allow", decision: "rule", profile: "open", rule_index: 0, endpoint: key("a") });
      expect(bySide.inbound).toMatchObject({ verdict: "allow", decision: "rule", profile: "fl-db", rule_index: 0, endpoint: key("b") });
      // Only the SYN of each connection: one packet per record.
      const ports = new Set(rs.map((r) => r.src_port));
      for (const p of ports) expect(rs.filter((r) => r.src_port === p).map((r) => r.packets)).toEqual([1, 1]);
    }
    // hv2 runs --flow-logs denied: an admitted flow there leaves no record,
    // while a denied one next to it does (the reader works).
    expect(await lab.probeTcp("x", "y", 80)).toBe("open");
    expect(await lab.probeTcp("x", "y", 82)).toBe("timeout");
    await record(["--host", "hv2", "--verdict", "deny"], (r) => r.src === addr("x", 4) && r.dst_port === 82, "hv2 denial");
    expect((await flows(["--host", "hv2", "--verdict", "allow"])).length).toBe(0);
    // The driver's JSON-lines file carries the same records.
    const lines = readFileSync(flowFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.verdict === "allow" && l.decision === "rule" && l.dst_port === 80 && l.host === "hv1")).toBe(true);
    expect(lines.some((l) => l.verdict === "deny" && l.decision === "default-deny" && l.dst_port === 82)).toBe(true);
  });

  it("rate-limits reports per host: a flood yields at most rate × time + burst records, and the rest is counted", async () => {
    // hv3: --flow-log-rate 5 --flow-log-burst 5. 300 new UDP flows (distinct
    // source ports) to a closed port, within about a second.
    const dst = addr("k", 4);
    const start = Date.now();
    const probes = Array.from({ length: 300 }, (_, i) => ({ proto: "udp" as const, dst, port: 81, srcPort: 42000 + i }));
    const res = await lab.probeMany("h", probes, 600);
    expect(res.every((r) => r === "timeout")).toBe(true);
    const seconds = (Date.now() - start) / 1000 + 2;
    await eventually(async () => (await metric("hv3", "palisade_driver_flow_records_dropped_total{reason=\"rate-limit\"}")) > 0, { timeoutMs: 25_000, what: "rate-limited reports counted" });
    const rs = (await flows(["--host", "hv3", "--verdict", "deny", "--limit", "10000"], B!.address)).filter((r) => r.dst === dst && r.dst_port === 81);
    expect(rs.length).toBeGreaterThan(0);
    expect(rs.length).toBeLessThanOrEqual(Math.ceil(5 * seconds + 5));
    expect(rs[0]).toMatchObject({ decision: "default-deny", endpoint: key("k"), protocol: "udp" });
    // Nothing is lost silently: reported + counted as rate-limited = sent
    // (the counter is read every 10 s).
    await eventually(async () => (await metric("hv3", "palisade_driver_flow_records_dropped_total{reason=\"rate-limit\"}")) + rs.length >= 300,
      { timeoutMs: 25_000, what: "every flood packet reported or counted" });
  });

  it("palisadectl flows merges several replicas; each replica serves the hosts connected to it", async () => {
    const onlyA = await flows(["--limit", "10000"], A!.address);
    const onlyB = await flows(["--limit", "10000"], B!.address);
    expect(onlyA.some((r) => r.host === "hv3")).toBe(false);
    expect(onlyB.every((r) => r.host === "hv3")).toBe(true);
    const both = await flows(["--limit", "10000"], `${A!.address},${B!.address}`);
    expect(new Set(both.map((r) => r.host))).toEqual(new Set(["hv1", "hv2", "hv3"]));
    // Table: "decided by" exactly as trace phrases it.
    const t = await palisadectl(A!.address, ["trace", "--from", addr("a", 4), "--to", addr("b", 4), "--protocol", "tcp", "--dst-port", "81"]);
    const phrase = t.stdout.split("\n").find((l) => l.includes("inbound"))!.split(" — ")[1]!;
    expect(phrase).toBe("inbound_rules[1] of profile fl-db");
    const table = await palisadectl(A!.address, ["flows", "--host", "hv1", "--endpoint", key("b"), "--verdict", "deny"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(phrase);
    expect(table.stdout.split("\n")[0]).toMatch(/^LAST-SEEN\s+VERDICT\s+DIRECTION\s+ENDPOINT\s+FLOW\s+PACKETS\s+DECIDED BY$/);
  });

  // Nothing here depends on the topology: once.
  if (topology === "routed") it("refuses bad flags with exit 2 and a one-line reason, before contacting anyone", async () => {
    for (const [args, msg] of [
      [["--since", "5 minutes"], "--since"], [["--since", "0s"], "--since"], [["--limit", "0"], "--limit"], [["--limit", "10001"], "--limit"],
      [["--endpoint", "hv1/fl/a"], "--endpoint"], [["--endpoint", "hv1/fl/a b/eth0"], "--endpoint"], [["--verdict", "maybe"], "verdict"],
      [["--host", "bad host"], "--host"],
    ] as const) {
      const r = await palisadectl("127.0.0.1:1", ["flows", ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      // The reason comes first, on one line (commander adds usage after its own errors).
      expect(r.stderr.split("\n")[0]).toContain(msg);
    }
  });

  it("a dead reader is restarted with backoff; policy keeps being applied meanwhile", async () => {
    const first = (await eventually(async () => tcpdumpOf("hv1"), { what: "hv1's tcpdump" }))!;
    process.kill(first, "SIGKILL");
    // Policy does not wait for the reader: a change applies at once.
    await apply(A!, [profile("fl-db", [{ action: "allow", protocol: "tcp", dst_ports: [80, 83] }, { action: "deny", protocol: "tcp", dst_ports: [81] }], [{}])], ["hv1"]);
    const second = await eventually(async () => { const p = tcpdumpOf("hv1"); return p !== undefined && p !== first ? p : undefined; }, { what: "a new tcpdump" });
    expect(second).not.toBe(first);
    expect(await metric("hv1", "palisade_driver_flow_reader_restarts_total")).toBeGreaterThanOrEqual(1);
    // Reports flow again once it listens (give it a moment to bind the group).
    await eventually(async () => {
      expect(await lab.probeTcp("a", "b", 84, { timeoutMs: 400 })).toBe("timeout");
      return (await flows(["--host", "hv1", "--verdict", "deny", "--since", "30s"])).some((r) => r.dst_port === 84 && r.decision === "default-deny");
    }, { timeoutMs: 20_000, intervalMs: 500, what: "reports after the restart" });
  });
});
