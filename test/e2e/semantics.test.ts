// DESIGN §2.1–§2.7, pinned with real packets: two hypervisor namespaces
// joined by a routed link (plus a third one with its own controller), the
// real controller against the test run's etcd, the real driver binaries
// programming iptables/ipset inside the hypervisor namespaces, and TCP, UDP
// and ICMP probes over IPv4 and IPv6 between workload namespaces.
//
// Every negative ("timeout" = dropped) assertion sits next to a positive one
// in the same probe round or step ("open"), so a lab that drops everything,
// or a policy that admits everything, fails the test.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb, refToPb } from "../../services/contract/model-wire.js";
import { createLab, type Lab, type ProbeResult } from "../lab/lab.js";
import { parseDocuments, type Rule } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type Ctrl = Awaited<ReturnType<typeof startTestController>>;
type Fam = 4 | 6;
type Proto = "tcp" | "udp" | "icmp";

const dir = mkdtempSync(join(tmpdir(), "palisade-semantics-"));
const sockA = join(dir, "a.sock");
const sockB = join(dir, "b.sock");
let lab: Lab;
let A: Ctrl | undefined;
let B: Ctrl | undefined;
const drivers: Record<string, ReturnType<Lab["spawnIn"]>> = {};

const OPEN = "open" as const;
const DROP = "timeout" as const;
const BOTH: Fam[] = [4, 6];
const PORTS = [80, 81, 82];
const HOST_PORTS = [7000, 7001];
/** Addresses of the hypervisors themselves (on lo), for workload -> host. */
const HV_ADDR: Record<string, Record<Fam, string>> = {
  hv1: { 4: "198.18.1.1", 6: "2001:db8:1::1" },
  hv3: { 4: "198.18.3.1", 6: "2001:db8:3::1" },
};
/** A second address on workload c's eth0 that is not c's (until the model says so). */
const SPOOF: Record<Fam, string> = { 4: "198.18.1.99", 6: "2001:db8:1::99" };

// ------------------------------------------------------------------ documents

type RuleDoc = Record<string, unknown>;
const profile = (id: string, inbound: RuleDoc[], outbound: RuleDoc[], tags: string[] = []) =>
  ({ kind: "Profile", id, tags, inbound_rules: inbound, outbound_rules: outbound });
const OPEN_PROFILE = profile("open", [{}], [{}]);

function endpoint(name: string, profiles: string[], extra: Record<string, unknown> = {}) {
  const w = lab.workloads.get(name)!;
  return {
    kind: "Endpoint", host: w.hypervisor, orchestrator: "sem", workload: w.name, id: "eth0", name: w.iface,
    state: "active", mac: w.mac, ipv4_nets: [`${w.ipv4}/32`], ipv6_nets: [`${w.ipv6}/128`], profile_ids: profiles, ...extra,
  };
}

async function hostsAt(ctrl: Ctrl, hosts: string[], rev: number): Promise<void> {
  await eventually(async () => {
    const s = await call(ctrl.clients.status, ctrl.clients.status.getStatus, {});
    return hosts.every((h) => s.hosts.some((x) => x.hostname === h && x.inSync && x.appliedRevision >= rev));
  }, { timeoutMs: 30_000, intervalMs: 25, what: `${hosts.join(",")} at revision ${rev}` });
}

/** Applies documents through the controller and waits until the hosts have programmed them. */
async function apply(docs: unknown[], ctrl: Ctrl = A!, hosts = ["hv1", "hv2"]): Promise<number> {
  const r = await call(ctrl.clients.policy, ctrl.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) });
  await hostsAt(ctrl, hosts, r.revision);
  return r.revision;
}

async function deleteEndpoint(name: string, ctrl: Ctrl = A!, hosts = ["hv1", "hv2"]): Promise<void> {
  const w = lab.workloads.get(name)!;
  const key = { host: w.hypervisor, orchestrator: "sem", workload: w.name, id: "eth0" };
  const r = await call(ctrl.clients.policy, ctrl.clients.policy.delete, { objects: [refToPb({ kind: "Endpoint", key })], ignoreMissing: false });
  await hostsAt(ctrl, hosts, r.revision);
}

// --------------------------------------------------------------------- probes

interface Flow {
  from: string;
  /** A workload name or a hypervisor name (its HV_ADDR). */
  to: string;
  proto: Proto;
  port?: number;
  fam: Fam;
  /** Source address to bind (TCP only): for the anti-spoofing test. */
  src?: string;
  expect: ProbeResult;
}

const flows = (proto: Proto, from: string, to: string, port: number | undefined, expect: ProbeResult, fams: Fam[] = BOTH, src?: Record<Fam, string>): Flow[] =>
  fams.map((fam) => ({ from, to, proto, port, fam, expect, src: src?.[fam] }));
const tcp = (from: string, to: string, port: number, expect: ProbeResult, fams: Fam[] = BOTH) => flows("tcp", from, to, port, expect, fams);
const udp = (from: string, to: string, port: number, expect: ProbeResult, fams: Fam[] = BOTH) => flows("udp", from, to, port, expect, fams);
const icmp = (from: string, to: string, expect: ProbeResult, fams: Fam[] = BOTH) => flows("icmp", from, to, undefined, expect, fams);

function dstAddr(f: Flow): string {
  const w = lab.workloads.get(f.to);
  if (w) return f.fam === 4 ? w.ipv4 : w.ipv6;
  return HV_ADDR[f.to]![f.fam];
}

const label = (f: Flow) => `${f.from}${f.src ? `(${f.src})` : ""} -> ${f.to} ${f.proto}${f.port ? `/${f.port}` : ""} v${f.fam}`;

/** Runs all flows at once (one process per source workload) and returns label -> outcome. */
async function probe(fs: Flow[], timeoutMs = 1000): Promise<Record<string, string>> {
  const groups = new Map<string, Flow[]>();
  for (const f of fs) {
    const k = `${f.from}|${f.src ? "bound" : "free"}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(f);
  }
  const out: Record<string, string> = {};
  await Promise.all([...groups.values()].map(async (g) => {
    const res = await lab.probeMany(g[0]!.from, g.map((f) => ({ proto: f.proto, dst: dstAddr(f), port: f.port, src: f.src })), timeoutMs);
    g.forEach((f, i) => { out[label(f)] = res[i]!; });
  }));
  return out;
}

/** Probes every flow and compares all outcomes at once (the diff names each flow). */
async function expectFlows(...groups: Flow[][]): Promise<void> {
  const fs = groups.flat();
  const expected = Object.fromEntries(fs.map((f) => [label(f), f.expect]));
  expect(await probe(fs)).toEqual(expected);
}


function startDriver(hv: string, socket: string): void {
  drivers[hv] = lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${socket}`, "--hostname", hv], { logFile: join(dir, `driver-${hv}.log`) });
}

const stillRunning = (hv: string) => drivers[hv]!.exitCode === null && drivers[hv]!.pid !== undefined;

// ---------------------------------------------------------------------- tests

describe("DESIGN §2 semantics with real packets (IPv4 and IPv6)", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("sem")}-`);
    await lab.addHypervisor("hv1");
    await lab.addHypervisor("hv2");
    await lab.addHypervisor("hv3"); // its own controller (workload -> host accept); not linked
    await lab.link("hv1", "hv2");
    await lab.addWorkload("hv1", { name: "a", iface: "tapa", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapb", host: 11 });
    await lab.addWorkload("hv1", { name: "c", iface: "tapc", host: 12 });
    await lab.addWorkload("hv1", { name: "n", iface: "tapn", host: 13 }); // never gets an endpoint (except briefly)
    await lab.addWorkload("hv2", { name: "x", iface: "tapx", host: 20 });
    await lab.addWorkload("hv2", { name: "y", iface: "tapy", host: 21 });
    await lab.addWorkload("hv3", { name: "h", iface: "taph", host: 30 });
    await lab.addWorkload("hv3", { name: "k", iface: "tapk", host: 31 });
    await Promise.all(["a", "b", "n", "x", "y", "k"].map((w) => lab.listen(w, PORTS)));

    // Hypervisor addresses for workload -> host probes.
    for (const hv of ["hv1", "hv3"]) {
      const ns = lab.hypervisors.get(hv)!.ns;
      await lab.exec(ns, "ip", ["addr", "add", `${HV_ADDR[hv]![4]}/32`, "dev", "lo"]);
      await lab.exec(ns, "ip", ["-6", "addr", "add", `${HV_ADDR[hv]![6]}/128`, "dev", "lo"]);
      await lab.listenIn(ns, HOST_PORTS);
    }

    // Workload c also holds addresses that are not its own; the hypervisor
    // routes them back to c, so only anti-spoofing can stop them.
    const c = lab.workloads.get("c")!;
    const hv1 = lab.hypervisors.get("hv1")!.ns;
    await lab.exec(c.ns, "ip", ["addr", "add", `${SPOOF[4]}/32`, "dev", "eth0"]);
    await lab.exec(c.ns, "ip", ["-6", "addr", "add", `${SPOOF[6]}/128`, "dev", "eth0", "nodad"]);
    await lab.exec(hv1, "ip", ["route", "add", `${SPOOF[4]}/32`, "dev", c.iface]);
    await lab.exec(hv1, "ip", ["-6", "route", "add", `${SPOOF[6]}/128`, "dev", c.iface]);
    await lab.exec(hv1, "ip", ["neigh", "replace", SPOOF[4], "lladdr", c.mac, "dev", c.iface, "nud", "permanent"]);
    await lab.exec(hv1, "ip", ["-6", "neigh", "replace", SPOOF[6], "lladdr", c.mac, "dev", c.iface, "nud", "permanent"]);

    A = await startTestController({ socket: sockA }); // workload -> host: drop (the default)
    startDriver("hv1", sockA);
    startDriver("hv2", sockA);
    await apply([OPEN_PROFILE, ...["a", "b", "c", "x", "y"].map((w) => endpoint(w, ["open"]))]);
  });

  afterAll(async () => {
    try {
      await lab?.destroy();
    } finally {
      await Promise.allSettled([A?.stop(), B?.stop()]);
    }
  });

  it("1. profiles are evaluated in profile_ids order and rules in order; the first match decides", async () => {
    const deny80 = profile("t1-deny80", [{ action: "deny", protocol: "tcp", dst_ports: [80] }], [{ action: "deny", protocol: "tcp", dst_ports: [82] }]);
    const allow = profile("t1-allow", [{ action: "allow", protocol: "tcp", dst_ports: [80, 81] }], [{ action: "allow" }]);
    const denyFirst = profile("t1-da", [{ action: "deny", protocol: "tcp", dst_ports: [80] }, { action: "allow", protocol: "tcp" }], [{}]);
    const allowFirst = profile("t1-ad", [{ action: "allow", protocol: "tcp", dst_ports: [80] }, { action: "deny", protocol: "tcp" }], [{}]);
    // The denying profile first: 80 denied, 81 falls through to the allowing profile.
    await apply([deny80, allow, denyFirst, allowFirst, endpoint("a", ["open"]),
      endpoint("x", ["t1-deny80", "t1-allow"]), endpoint("y", ["t1-da"])]);
    await expectFlows(
      tcp("a", "x", 80, DROP), tcp("a", "x", 81, OPEN),
      tcp("x", "a", 82, DROP), tcp("x", "a", 81, OPEN), // outbound: deny-82 profile first
      tcp("a", "y", 80, DROP), tcp("a", "y", 81, OPEN), // rules: deny 80 before allow tcp
    );
    // Swapped: the allowing profile decides first.
    await apply([endpoint("x", ["t1-allow", "t1-deny80"]), endpoint("y", ["t1-ad"])]);
    await expectFlows(
      tcp("a", "x", 80, OPEN), tcp("a", "x", 81, OPEN), tcp("a", "x", 82, DROP),
      tcp("x", "a", 82, OPEN),
      tcp("a", "y", 80, OPEN), tcp("a", "y", 81, DROP), // rules: allow 80 before deny tcp
    );
  });

  it("1. nothing matched in any profile -> denied (inbound and outbound)", async () => {
    await apply([
      profile("t2-x", [{ protocol: "tcp", dst_ports: [80] }, { protocol: "udp", dst_ports: [80] }], [{}]),
      profile("t2-none", [{ protocol: "tcp", dst_ports: [82], src_tag: "t2-nobody" }], [{}]),
      profile("t2-a", [{}], [{ protocol: "tcp" }]),
      endpoint("a", ["t2-a"]), endpoint("b", ["open"]), endpoint("x", ["t2-x", "t2-none"]),
    ]);
    await expectFlows(
      tcp("b", "x", 80, OPEN), udp("b", "x", 80, OPEN),
      tcp("b", "x", 81, DROP), tcp("b", "x", 82, DROP), udp("b", "x", 81, DROP), icmp("b", "x", DROP),
      tcp("a", "x", 80, OPEN), udp("a", "x", 80, DROP), icmp("a", "y", DROP), // a's outbound allows tcp only
    );
  });

  it("2. fail safe: no profiles, a missing profile, an inactive endpoint -> dropped both ways", async () => {
    await apply([OPEN_PROFILE, endpoint("a", ["open"]), endpoint("x", ["open"]), endpoint("y", ["open"])]);
    await expectFlows(tcp("a", "x", 80, OPEN), tcp("x", "a", 80, OPEN), udp("x", "a", 80, OPEN));

    // No profiles at all.
    await apply([endpoint("x", [])]);
    await expectFlows(
      tcp("a", "x", 80, DROP), tcp("x", "a", 80, DROP), udp("x", "a", 80, DROP), icmp("x", "a", DROP),
      tcp("a", "y", 80, OPEN), tcp("y", "a", 80, OPEN),
    );

    // A referenced profile that does not exist: deny-all in its place (a
    // profile before it still decides what it matches; profiles after it
    // are never reached).
    await apply([
      profile("t3-allow80", [{ protocol: "tcp", dst_ports: [80] }], [{ protocol: "udp" }]),
      endpoint("x", ["t3-missing", "open"]), endpoint("y", ["t3-allow80", "t3-missing", "open"]),
    ]);
    await expectFlows(
      tcp("a", "x", 80, DROP), tcp("x", "a", 80, DROP),
      tcp("a", "y", 80, OPEN), tcp("a", "y", 81, DROP), udp("y", "a", 80, OPEN), tcp("y", "a", 80, DROP),
    );
    // Creating the profile takes effect without restarting anything.
    await apply([profile("t3-missing", [{}], [{}])]);
    await expectFlows(
      tcp("a", "x", 80, OPEN), tcp("x", "a", 80, OPEN),
      tcp("a", "y", 81, OPEN), tcp("y", "a", 80, OPEN),
    );
    expect(stillRunning("hv1") && stillRunning("hv2")).toBe(true);

    // Inactive: dropped whatever its profiles say.
    await apply([endpoint("x", ["open"], { state: "inactive" }), endpoint("y", ["open"])]);
    await expectFlows(
      tcp("a", "x", 80, DROP), tcp("x", "a", 80, DROP), icmp("a", "x", DROP),
      tcp("a", "y", 80, OPEN), icmp("a", "y", OPEN),
    );
    await apply([endpoint("x", ["open"])]);
    await expectFlows(tcp("a", "x", 80, OPEN), tcp("x", "a", 80, OPEN), icmp("a", "x", OPEN));
  });

  it("2. a tap-prefixed interface without an endpoint is dropped both ways", async () => {
    await apply([OPEN_PROFILE, endpoint("a", ["open"]), endpoint("x", ["open"])]);
    await expectFlows(
      tcp("n", "x", 80, DROP), udp("n", "x", 80, DROP), icmp("n", "x", DROP),
      tcp("x", "n", 80, DROP), tcp("a", "n", 80, DROP), // remote and same host
      tcp("a", "x", 80, OPEN), tcp("x", "a", 80, OPEN),
    );
    // Control: the same interface with an endpoint works (so the lab routes it) …
    await apply([endpoint("n", ["open"])]);
    await expectFlows(tcp("n", "x", 80, OPEN), tcp("x", "n", 80, OPEN), tcp("a", "n", 80, OPEN));
    // … and once the endpoint is deleted it is dropped again.
    await deleteEndpoint("n");
    await expectFlows(tcp("n", "x", 80, DROP), tcp("x", "n", 80, DROP), tcp("x", "a", 80, OPEN));
  });

  it("3. tags are dynamic across hosts; an unknown tag never matches positively", async () => {
    const tX = (tags: string[]) => profile("t4-x", [
      { protocol: "tcp", dst_ports: [80], src_tag: "t4-cli" },
      { protocol: "tcp", dst_ports: [81], "!src_tag": "t4-unknown" },
      { protocol: "tcp", dst_ports: [82], src_tag: "t4-unknown" },
    ], [{}], tags);
    const tA = (tags: string[]) => profile("t4-a", [{}], [{ protocol: "tcp", dst_tag: "t4-srv" }], tags);
    const tB = profile("t4-b", [{}], [{}]);
    await apply([OPEN_PROFILE, tX(["t4-srv"]), tA(["t4-cli"]), tB,
      endpoint("a", ["t4-a"]), endpoint("b", ["t4-b"]), endpoint("x", ["t4-x"]), endpoint("y", ["open"])]);
    await expectFlows(
      tcp("a", "x", 80, OPEN), tcp("b", "x", 80, DROP), // src_tag: a member on the other host
      tcp("a", "x", 81, OPEN), tcp("b", "x", 81, OPEN), // !src_tag of an unknown tag: everything
      tcp("a", "x", 82, DROP), tcp("b", "x", 82, DROP), // src_tag of an unknown tag: nothing
      tcp("a", "y", 80, DROP), tcp("b", "y", 80, OPEN), // dst_tag: y is not a t4-srv member
    );
    // The tag removed from the member's profile: revoked.
    await apply([tA([])]);
    await expectFlows(tcp("a", "x", 80, DROP), tcp("a", "x", 81, OPEN));
    // The tag back, and b gains it through a second profile …
    await apply([tA(["t4-cli"]), endpoint("b", ["t4-b", "t4-a"])]);
    await expectFlows(tcp("a", "x", 80, OPEN), tcp("b", "x", 80, OPEN));
    // … and loses it when the profile leaves its profile_ids.
    await apply([endpoint("b", ["t4-b"])]);
    await expectFlows(tcp("b", "x", 80, DROP), tcp("a", "x", 80, OPEN));
    // dst_tag follows the destination's membership too.
    await apply([tX([])]);
    await expectFlows(tcp("a", "x", 81, DROP), tcp("b", "x", 81, OPEN));
  });

  it("4. stateful: replies of admitted flows pass though policy denies that direction", async () => {
    await apply([
      profile("t5-client", [], [{}]), // nothing may reach it
      profile("t5-server", [{}], []), // it may send nothing
      endpoint("a", ["t5-client"]), endpoint("x", ["t5-server"]), endpoint("b", ["t5-server"]),
    ]);
    await expectFlows(
      tcp("a", "x", 80, OPEN), udp("a", "x", 80, OPEN), icmp("a", "x", OPEN), // other host
      tcp("a", "b", 80, OPEN), udp("a", "b", 80, OPEN), icmp("a", "b", OPEN), // same host
      tcp("x", "a", 80, DROP), udp("x", "a", 80, DROP), icmp("x", "a", DROP),
      tcp("b", "a", 80, DROP), udp("b", "a", 80, DROP),
    );
  });

  it("5. anti-spoofing: a source address that is not the workload's is dropped", async () => {
    await apply([OPEN_PROFILE, endpoint("c", ["open"]), endpoint("x", ["open"])]);
    const c = lab.workloads.get("c")!;
    const own = { 4: c.ipv4, 6: c.ipv6 };
    await expectFlows(flows("tcp", "c", "x", 80, OPEN, BOTH, own), flows("tcp", "c", "x", 80, DROP, BOTH, SPOOF));
    // Control: the same addresses pass once they are the endpoint's.
    await apply([endpoint("c", ["open"], { ipv4_nets: [`${c.ipv4}/32`, `${SPOOF[4]}/32`], ipv6_nets: [`${c.ipv6}/128`, `${SPOOF[6]}/128`] })]);
    await expectFlows(flows("tcp", "c", "x", 80, OPEN, BOTH, own), flows("tcp", "c", "x", 80, OPEN, BOTH, SPOOF));
    // And are dropped again when removed.
    await apply([endpoint("c", ["open"])]);
    await expectFlows(flows("tcp", "c", "x", 80, OPEN, BOTH, own), flows("tcp", "c", "x", 80, DROP, BOTH, SPOOF));
  });

  it("5. anti-spoofing: a MAC other than the endpoint's is dropped", async () => {
    await apply([OPEN_PROFILE, endpoint("a", ["open"]), endpoint("b", ["open"], { mac: "02:de:ad:be:ef:01" }), endpoint("x", ["open"])]);
    await expectFlows(
      tcp("b", "x", 80, DROP), udp("b", "x", 80, DROP), icmp("b", "x", DROP), tcp("b", "a", 80, DROP),
      tcp("a", "x", 80, OPEN), udp("a", "x", 80, OPEN),
    );
    await apply([endpoint("b", ["open"])]); // the lab's real MAC
    await expectFlows(tcp("b", "x", 80, OPEN), udp("b", "x", 80, OPEN), icmp("b", "x", OPEN), tcp("b", "a", 80, OPEN));
  });

  it("6. same-host traffic passes the sender's outbound and the receiver's inbound rules", async () => {
    await apply([
      OPEN_PROFILE,
      profile("t8-in-none", [], [{}]),
      profile("t8-out-no80", [{}], [{ action: "deny", protocol: "tcp", dst_ports: [80] }, {}]),
      endpoint("a", ["open"]), endpoint("b", ["t8-in-none"]), endpoint("x", ["open"]),
    ]);
    // Sender allows, receiver denies.
    await expectFlows(tcp("a", "b", 80, DROP), udp("a", "b", 80, DROP), tcp("a", "x", 80, OPEN), tcp("b", "a", 80, OPEN));
    // Receiver allows, sender denies.
    await apply([endpoint("a", ["t8-out-no80"]), endpoint("b", ["open"])]);
    await expectFlows(tcp("a", "b", 80, DROP), tcp("a", "b", 81, OPEN), tcp("x", "b", 80, OPEN), tcp("a", "x", 80, DROP));
    // Both allow.
    await apply([endpoint("a", ["open"])]);
    await expectFlows(tcp("a", "b", 80, OPEN), udp("a", "b", 80, OPEN));
  });

  it("6. workload -> host is dropped by default", async () => {
    await apply([OPEN_PROFILE, endpoint("a", ["open"]), endpoint("x", ["open"])]);
    // The host's listener is up (probed from the host itself, which is not policed).
    const hv1 = lab.hypervisors.get("hv1")!.ns;
    const local = `const s=require("net").connect({host:${JSON.stringify(HV_ADDR.hv1![4])},port:7000});s.on("connect",()=>{console.log("open");s.destroy()});s.on("error",e=>console.log(e.code))`;
    expect((await lab.exec(hv1, process.execPath, ["-e", local])).trim()).toBe("open");
    await expectFlows(
      tcp("a", "hv1", 7000, DROP), tcp("a", "hv1", 7001, DROP), icmp("a", "hv1", DROP),
      tcp("a", "x", 80, OPEN), icmp("a", "x", OPEN),
    );
  });

  it("2+6. a driver without its first state drops; with workload_to_host accept, host traffic follows outbound rules", async () => {
    // No driver yet: the lab forwards and the host answers.
    await expectFlows(tcp("h", "k", 80, OPEN), tcp("h", "hv3", 7000, OPEN));
    // A driver whose controller is not there yet fails closed.
    startDriver("hv3", sockB);
    await eventually(async () => (await lab.probeTcp("h", "k", 80, { timeoutMs: 500 })) === "timeout", { what: "hv3 fail closed" });
    await expectFlows(tcp("h", "k", 80, DROP), tcp("k", "h", 80, DROP), tcp("h", "hv3", 7000, DROP));
    // Its controller (workload -> host: accept) comes up with a model.
    B = await startTestController({ socket: sockB, workloadToHost: "accept" });
    await apply([
      OPEN_PROFILE,
      profile("t7-h", [{}], [{ protocol: "tcp", dst_ports: [80, 7000] }]),
      endpoint("h", ["t7-h"]), endpoint("k", ["open"]),
    ], B, ["hv3"]);
    await expectFlows(
      tcp("h", "hv3", 7000, OPEN), tcp("h", "hv3", 7001, DROP), icmp("h", "hv3", DROP),
      tcp("h", "k", 80, OPEN), tcp("h", "k", 81, DROP),
      tcp("k", "hv3", 7001, OPEN), // k's outbound allows everything
    );
    expect(stillRunning("hv3")).toBe(true);
  });

  it("7. a rule naming an IP version or a CIDR of one family applies to that family only; mixed rules are refused", async () => {
    const rules: RuleDoc[] = [
      { ip_version: 4, protocol: "tcp", dst_ports: [80] },
      { protocol: "tcp", dst_ports: [81], src_net: "198.18.1.0/24" },
      { protocol: "tcp", dst_ports: [82], src_net: "2001:db8:1::/64" },
      { ip_version: 6, protocol: "udp", dst_ports: [80] },
      { protocol: "udp", dst_ports: [81], "!src_net": "203.0.113.0/24" },
    ];
    await apply([OPEN_PROFILE, profile("t9-x", rules, [{}]), endpoint("a", ["open"]), endpoint("x", ["t9-x"])]);
    await expectFlows(
      tcp("a", "x", 80, OPEN, [4]), tcp("a", "x", 80, DROP, [6]),
      tcp("a", "x", 81, OPEN, [4]), tcp("a", "x", 81, DROP, [6]),
      tcp("a", "x", 82, OPEN, [6]), tcp("a", "x", 82, DROP, [4]),
      udp("a", "x", 80, OPEN, [6]), udp("a", "x", 80, DROP, [4]),
      udp("a", "x", 81, OPEN, [4]), udp("a", "x", 81, DROP, [6]),
    );
    const before = (await call(A!.clients.policy, A!.clients.policy.getRevision, {})).revision;
    // Built past the client-side checks (parseDocuments refuses them too):
    // the controller itself must refuse them.
    const mixedRules: Rule[] = [
      { action: "allow", ipVersion: 4, match: { srcNet: "2001:db8:1::/64" }, negated: {} },
      { action: "allow", match: { srcNet: "198.18.1.0/24", dstNet: "2001:db8:2::/64" }, negated: {} },
    ];
    for (const mixed of mixedRules) {
      const [doc] = parseDocuments([profile("t9-x", [{}], [{}])]);
      if (doc?.kind !== "Profile") throw new Error("unreachable");
      doc.profile.inboundRules.push(mixed);
      const docs = [documentToPb(doc)];
      await expect(call(A!.clients.policy, A!.clients.policy.apply, { deletes: [], documents: docs })).rejects.toThrow(/mixes IPv4 and IPv6/);
    }
    expect((await call(A!.clients.policy, A!.clients.policy.getRevision, {})).revision).toBe(before);
    await expectFlows(tcp("a", "x", 80, DROP, [6]), tcp("a", "x", 80, OPEN, [4]));
  });
});
