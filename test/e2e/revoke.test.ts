// Revoked access ends open connections; allowed ones go on (issue #21,
// DESIGN §6.14). Long-lived sessions of every kind (TCP client-first, TCP
// server-first, UDP request/response, ICMP echo), IPv4 and IPv6, run between
// workloads on two routed hypervisors and on a bridged one, each side
// recording the wall-clock time of every receive (test/lab/sessions.ts).
// A change is applied and T is when every host reports it applied. Then:
//   - a revoked session passes nothing, either way, later than T + 1 s
//     (checked over the 2 s after that);
//   - a session the new model still admits loses no UDP datagram or ICMP
//     echo, never waits over 100 ms for a packet because of a drop (see
//     policyGaps) and is never reset across
//     the change, nor across an unrelated change, a driver restart and a
//     drift repair;
//   - a new endpoint at a deleted endpoint's address inherits none of its
//     connections: TCP ends whether or not its own profile would admit the
//     peer; UDP and ICMP are judged as new flows by its own policy.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb, refToPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { createLab, type Lab } from "../lab/lab.js";
import { createSessions, type Session, type Sessions } from "../lab/sessions.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

/** The spec's figures (issue #21): revocation within 1 s, no pause over 100 ms for what stays allowed. */
const REVOKE_WITHIN_MS = 1_000;
const CHECK_WINDOW_MS = 2_000;
const MAX_GAP_MS = 100;
const HOSTS = ["hv1", "hv2", "hv3"];

const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

/** The sides of a session that receive application data (ICMP, TCP server-first: the client only). */
const receivingSides = (s: Session): ("client" | "server")[] =>
  s.spec.kind === "tcp-cf" || s.spec.kind === "udp" ? ["client", "server"] : ["client"];

const ALL_PROTOCOLS = [{ protocol: "tcp" }, { protocol: "udp" }, { protocol: "icmp" }, { protocol: "icmpv6" }];

describe("revoked access ends open connections, allowed ones go on", () => {
  let lab: Lab;
  let sessions: Sessions;
  let t: Awaited<ReturnType<typeof startTestController>>;
  const dir = mkdtempSync(join(tmpdir(), "palisade-revoke-"));
  const groups: Record<string, Session[]> = {};
  /** T of the revoking change and the time it was sent. */
  let T = 0, sentAt = 0;

  const endpoint = (name: string, profiles: string[], opts: { state?: string; workload?: string; id?: string } = {}) => {
    const w = lab.workloads.get(name)!;
    return {
      kind: "Endpoint", host: w.hypervisor, orchestrator: "t", workload: opts.workload ?? name, id: opts.id ?? "e", name: w.iface,
      state: opts.state ?? "active", mac: w.mac, ipv4_nets: [`${w.ipv4}/32`], ipv6_nets: [`${w.ipv6}/128`], profile_ids: profiles,
    };
  };
  const profile = (id: string, inbound: object[], tags: string[] = [id]) => ({ kind: "Profile", id, tags, inbound_rules: inbound, outbound_rules: [{}] });

  const drivers = new Map<string, ReturnType<Lab["spawnIn"]>>();
  const startDriverOn = (hv: string, log = `driver-${hv}.log`) => {
    drivers.set(hv, lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath,
      [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", hv], { logFile: join(dir, log) }));
  };
  /** Every host connected, in sync and without error at `rev` or later. */
  async function allApplied(rev: number): Promise<void> {
    let last = "";
    await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      last = JSON.stringify(s.hosts.map((h) => [h.hostname, h.appliedRevision, h.inSync, h.connected, h.lastError]));
      return HOSTS.every((name) => {
        const h = s.hosts.find((x) => x.hostname === name);
        return h && h.connected && h.inSync && h.appliedRevision >= rev && h.lastError === "";
      });
    }, { what: `all hosts applied revision ${rev}`, timeoutMs: 30_000, intervalMs: 20 }).catch((e: Error) => { throw new Error(`${e.message}: ${last}`); });
  }

  /** Applies documents and endpoint deletions; resolves at T, when every host reports the revision applied. */
  async function apply(docs: object[], deletes: { host: string; workload: string; id: string }[] = []): Promise<number> {
    const del = deletes.map((k) => ({ object: refToPb({ kind: "Endpoint", key: { ...k, orchestrator: "t" } }) }));
    const rev = (await call(t.clients.policy, t.clients.policy.apply, { deletes: del, documents: parseDocuments(docs).map(documentToPb) })).revision;
    await allApplied(Number(rev));
    return Date.now();
  }

  /** Every receive (either side) later than T + 1 s, per session: must be none. */
  function leaks(list: Session[], T0: number): string[] {
    return list.flatMap((s) => {
      const late = s.rxAfter(T0 + REVOKE_WITHIN_MS);
      return late.length ? [`${s.label}: ${late.length} receives after T+${REVOKE_WITHIN_MS} ms, last at T+${late.at(-1)! - T0} ms`] : [];
    });
  }

  /** TCP retransmissions per session, as of `retransAt`. */
  const retransAt = new Map<Session, number>();
  const snapshotRetrans = async (list: Session[]) => { for (const x of list) retransAt.set(x, await x.retransmitted()); };

  /**
   * A policy gap in a session that stays allowed, over [from, to], per
   * session: a UDP datagram or ICMP echo (request or reply) that never
   * arrived; a TCP end or reset; a packet that waited over 100 ms for
   * delivery (the peer's send to this side's receive, less the receiver's
   * own pauses) in a way a rule can cause.
   *
   * Netfilter accepts or drops, it never holds a packet: a rule can make a
   * packet late only by dropping it (or one before it), and a dropped
   * datagram or echo is counted lost, a dropped TCP segment is
   * retransmitted. So a long wait of a UDP/ICMP session with nothing lost,
   * or of a TCP session that retransmitted nothing, is the lab's (on a
   * busy 2-core machine the softirq thread that delivers a veth's packets
   * was seen starved for 144 ms, no retransmission): printed, not judged.
   * A TCP wait with a retransmission in the window is judged, even though
   * a busy machine also makes TCP retransmit spuriously (seen: 7 in 40 s
   * with --no-end-revoked-connections under load), so retransmissions
   * alone are printed, not judged.
   */
  async function policyGaps(list: Session[], from: number, to: number, T0: number): Promise<string[]> {
    const out: string[] = [];
    let worst = { label: "", gap: 0 };
    let retrans = 0;
    const labs: string[] = [];
    const at = (t: number) => `T${t - T0 >= 0 ? "+" : ""}${t - T0} ms`;
    for (const x of list) {
      const lost = x.lost(from, to - 300);
      if (lost.length) out.push(`${x.label}: ${lost.length} packets lost, first sent at ${at(lost[0]!)}`);
      const retransmitted = (await x.retransmitted()) - (retransAt.get(x) ?? 0);
      const tcp = x.spec.kind === "tcp-cf" || x.spec.kind === "tcp-sf";
      for (const side of receivingSides(x)) {
        const d = x.maxDelay(side, from, to);
        if (d.gap > worst.gap) worst = { label: `${x.label} ${side} at ${at(d.at)}`, gap: d.gap };
        if (d.gap <= MAX_GAP_MS) continue;
        const wait = `${x.label}: ${side} waited ${d.gap} ms for a packet sent at ${at(d.at)}`;
        if (tcp && retransmitted > 0) out.push(`${wait} (${retransmitted} TCP retransmissions)`);
        else labs.push(wait);
      }
      retrans += retransmitted;
      out.push(...x.ended().map((e) => `${x.label}: ${e.ev}${e.code ? ` ${e.code}` : ""}`));
    }
    console.log(`kept sessions: longest delivery delay ${worst.gap} ms (${worst.label}), TCP retransmissions ${retrans}`);
    if (labs.length) console.log(`kept sessions: late with nothing dropped (the lab's scheduling, not judged): ${labs.join("; ")}`);
    return out;
  }

  const docs = (over: Record<string, object> = {}) => {
    const base: Record<string, object> = {
      cli: profile("cli", []),
      friend: profile("friend", [], ["friends"]),
      "p-rule": profile("p-rule", ALL_PROTOCOLS),
      "p-tag": profile("p-tag", [{ src_tag: "friends" }]),
      "p-open": profile("p-open", [{}]),
      "p-keep": profile("p-keep", ALL_PROTOCOLS),
      "p-closed": profile("p-closed", []),
      a: endpoint("a", ["cli"]), b: endpoint("b", ["cli", "friend"]), x: endpoint("x", ["cli"]),
      r1: endpoint("r1", ["p-rule"]), r2: endpoint("r2", ["p-tag"]), r3: endpoint("r3", ["p-open"]), r4: endpoint("r4", ["p-open"]),
      k1: endpoint("k1", ["p-keep"]), k2: endpoint("k2", ["p-keep"]), kb: endpoint("kb", ["p-open"]),
      n1: endpoint("n1", ["p-open"]), n2: endpoint("n2", ["p-open"]),
    };
    return Object.values({ ...base, ...over });
  };

  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("rv")}-`);
    await lab.addHypervisorPair();
    await lab.addHypervisor("hv3");
    await lab.addBridge("hv3", "brqnet3", { bridgeNf: true });
    // hv1: clients a and b, servers r2 (tag) and k1 (kept, same host).
    await lab.addWorkload("hv1", { name: "a", iface: "tapa", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapb", host: 11 });
    await lab.addWorkload("hv1", { name: "r2", iface: "tapr2", host: 20 });
    await lab.addWorkload("hv1", { name: "k1", iface: "tapk1", host: 30 });
    // hv2: servers r1 (rule removed), r4 (profile removed), k2 (kept), n1/n2 (replaced endpoints).
    await lab.addWorkload("hv2", { name: "r1", iface: "tapr1", host: 10 });
    await lab.addWorkload("hv2", { name: "r4", iface: "tapr4", host: 20 });
    await lab.addWorkload("hv2", { name: "k2", iface: "tapk2", host: 30 });
    await lab.addWorkload("hv2", { name: "n1", iface: "tapn1", host: 40 });
    await lab.addWorkload("hv2", { name: "n2", iface: "tapn2", host: 41 });
    // hv3, bridged: client x, servers r3 (deactivated) and kb (kept).
    await lab.addBridgedWorkload("hv3", { name: "x", iface: "tapx", bridge: "brqnet3", host: 10 });
    await lab.addBridgedWorkload("hv3", { name: "r3", iface: "tapr3", bridge: "brqnet3", host: 20 });
    await lab.addBridgedWorkload("hv3", { name: "kb", iface: "tapkb", bridge: "brqnet3", host: 30 });
    t = await startTestController({ socket: join(dir, "ctl.sock") });
    for (const hv of HOSTS) startDriverOn(hv);
    await apply(docs());
    sessions = createSessions(lab);
    groups.rule = await sessions.openAll("a", "r1", 7000);
    groups.tag = [
      await sessions.open({ kind: "tcp-cf", family: 4, client: "b", server: "r2", port: 7100 }),
      await sessions.open({ kind: "tcp-sf", family: 6, client: "b", server: "r2", port: 7101 }),
      await sessions.open({ kind: "udp", family: 6, client: "b", server: "r2", port: 7102 }),
      await sessions.open({ kind: "icmp", family: 4, client: "b", server: "r2" }),
    ];
    groups.inactive = [
      await sessions.open({ kind: "tcp-sf", family: 4, client: "x", server: "r3", port: 7200 }),
      await sessions.open({ kind: "udp", family: 6, client: "x", server: "r3", port: 7201 }),
      await sessions.open({ kind: "icmp", family: 6, client: "x", server: "r3" }),
    ];
    groups.unprofiled = [
      await sessions.open({ kind: "tcp-cf", family: 6, client: "a", server: "r4", port: 7300 }),
      await sessions.open({ kind: "udp", family: 4, client: "a", server: "r4", port: 7301 }),
      await sessions.open({ kind: "icmp", family: 4, client: "a", server: "r4" }),
    ];
    groups.kept = [
      ...await sessions.openAll("a", "k2", 7400),
      await sessions.open({ kind: "tcp-sf", family: 6, client: "a", server: "k1", port: 7500 }),
      await sessions.open({ kind: "udp", family: 4, client: "a", server: "k1", port: 7501 }),
      await sessions.open({ kind: "tcp-cf", family: 6, client: "x", server: "kb", port: 7600 }),
      await sessions.open({ kind: "udp", family: 4, client: "x", server: "kb", port: 7601 }),
      await sessions.open({ kind: "icmp", family: 4, client: "x", server: "kb" }),
    ];
    groups.replacedClosed = [
      await sessions.open({ kind: "tcp-cf", family: 4, client: "a", server: "n1", port: 7700 }),
      await sessions.open({ kind: "udp", family: 6, client: "a", server: "n1", port: 7701 }),
    ];
    groups.replacedOpen = [
      await sessions.open({ kind: "tcp-sf", family: 4, client: "a", server: "n2", port: 7800 }),
      await sessions.open({ kind: "udp", family: 4, client: "a", server: "n2", port: 7801 }),
      await sessions.open({ kind: "icmp", family: 6, client: "a", server: "n2" }),
    ];
    // One revoking change for four kinds of revocation at once; the kept
    // profile changes too (a rule added) but still admits its sessions.
    await snapshotRetrans(groups.kept);
    sentAt = Date.now();
    T = await apply(docs({
      "p-rule": profile("p-rule", []),
      b: endpoint("b", ["cli"]),
      r3: endpoint("r3", ["p-open"], { state: "inactive" }),
      r4: endpoint("r4", []),
      "p-keep": profile("p-keep", [...ALL_PROTOCOLS, { protocol: "tcp", dst_ports: [9999] }]),
    }));
    await sleepUntil(T + REVOKE_WITHIN_MS + CHECK_WINDOW_MS);
  }, 150_000);
  afterAll(async () => {
    // finally: a throw while stopping sessions must not leave the lab's namespaces behind.
    try {
      sessions?.stopAll();
    } finally {
      try { await lab?.destroy(); } finally { await t?.stop(); }
    }
  });

  it("every session ran before the change (the lab's traffic is real)", () => {
    const silent = Object.values(groups).flat().filter((s) => !s.read().client.rx.some((x) => x < sentAt));
    expect(silent.map((s) => s.label)).toEqual([]);
    expect(Object.values(groups).flat().length).toBe(36);
  });

  it("a rule removed from the allowing profile ends its sessions (all kinds, both families, across hosts)", () => {
    expect(leaks(groups.rule!, T)).toEqual([]);
  });

  it("a peer leaving a tag ends its sessions (same host)", () => {
    expect(leaks(groups.tag!, T)).toEqual([]);
  });

  it("a deactivated endpoint's sessions end (bridged hypervisor)", () => {
    expect(leaks(groups.inactive!, T)).toEqual([]);
  });

  it("an endpoint whose profile is removed loses its sessions", () => {
    expect(leaks(groups.unprofiled!, T)).toEqual([]);
  });

  it("sessions the new model still admits lose no packet and never wait over 100 ms across the change, and are not reset", async () => {
    expect(await policyGaps(groups.kept!, sentAt - 1_000, T + REVOKE_WITHIN_MS + CHECK_WINDOW_MS, T)).toEqual([]);
  });

  it("the same across an unrelated change", async () => {
    // The revoked sessions are checked: stop them, so their retransmissions
    // load neither the CPU nor the measure.
    for (const g of ["rule", "tag", "inactive", "unprofiled"]) for (const s of groups[g]!) s.stop();
    await snapshotRetrans(groups.kept!);
    const from = Date.now();
    const T1 = await apply([profile("unrelated", [{ protocol: "tcp", dst_ports: [1234] }])]);
    await sleepUntil(T1 + 1_000);
    expect(await policyGaps(groups.kept!, from - 500, Date.now(), T1)).toEqual([]);
  }, 60_000);

  it("the same across a driver restart: the new driver adopts the rules, starts a new epoch, and every connection is judged once more", async () => {
    await snapshotRetrans(groups.kept!);
    const from = Date.now();
    const hv2 = drivers.get("hv2")!;
    const rev = Math.max(...(await call(t.clients.status, t.clients.status.getStatus, {})).hosts.map((h) => Number(h.appliedRevision)));
    hv2.kill("SIGTERM");
    await hv2;
    startDriverOn("hv2", "driver-hv2-restarted.log");
    await allApplied(Number(rev));
    await sleepUntil(Date.now() + 1_500);
    expect(await policyGaps(groups.kept!, from, Date.now(), from)).toEqual([]);
  }, 60_000);

  it("the same across a drift repair (a full plan advances every epoch)", async () => {
    await snapshotRetrans(groups.kept!);
    const from = Date.now();
    // A foreign rule in our chain: the tamper watch repairs it with a full plan.
    const hv1 = lab.hypervisors.get("hv1")!.ns;
    await lab.exec(hv1, "iptables", ["-I", "pal-FORWARD", "1", "-s", "192.0.2.99", "-j", "DROP"]);
    await eventually(async () => !(await lab.exec(hv1, "iptables", ["-S", "pal-FORWARD"])).includes("192.0.2.99"), { what: "the repair", timeoutMs: 40_000, intervalMs: 50 });
    await sleepUntil(Date.now() + 1_500);
    expect(await policyGaps(groups.kept!, from, Date.now(), from)).toEqual([]);
  }, 60_000);

  it("a new endpoint at a deleted endpoint's address inherits none of its connections: a TCP connection ends, other packets are new flows under its own policy", async () => {
    // n1 and n2 are deleted and re-created (another workload key) at the same
    // interface and addresses: n1 under a profile that admits nothing, n2
    // under one that admits a's traffic as new connections. A TCP
    // connection is state the old endpoint held: it ends either way (the
    // new VM would reset it). A UDP datagram or ICMP echo after the
    // replacement is a new flow, judged by the new endpoint's policy
    // (the old entries are deleted, so none admits it as a reply).
    const T2 = await apply([
      { ...endpoint("n1", ["p-closed"], { workload: "n1-new", id: "e2" }) },
      { ...endpoint("n2", ["p-open"], { workload: "n2-new", id: "e2" }) },
    ], [{ host: "hv2", workload: "n1", id: "e" }, { host: "hv2", workload: "n2", id: "e" }]);
    await sleepUntil(T2 + REVOKE_WITHIN_MS + CHECK_WINDOW_MS);
    const tcp = (s: Session) => s.spec.kind === "tcp-cf" || s.spec.kind === "tcp-sf";
    const silent = (list: Session[]) => list.filter((s) => s.rxAfter(T2 + REVOKE_WITHIN_MS).length === 0).map((s) => s.label);
    expect({
      "replaced by a closed endpoint": leaks(groups.replacedClosed!, T2),
      "TCP, replaced by an endpoint that would admit it as new": leaks(groups.replacedOpen!.filter(tcp), T2),
      "UDP/ICMP to an endpoint that admits them as new flows, silent": silent(groups.replacedOpen!.filter((s) => !tcp(s))),
    }).toEqual({ "replaced by a closed endpoint": [], "TCP, replaced by an endpoint that would admit it as new": [], "UDP/ICMP to an endpoint that admits them as new flows, silent": [] });
  }, 60_000);
});
