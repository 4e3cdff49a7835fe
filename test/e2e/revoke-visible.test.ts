// Revoked connections are visible (issue #21 item 7, DESIGN §6.12, §6.14):
// long-lived TCP sessions (client-first over IPv4, server-first over IPv6,
// so both an original-direction and a reply-direction packet can be the
// first one after the denial) from a workload on hv1 to one on hv2; the
// rule admitting them is removed; on both lab topologies (routed taps, and
// taps that are bridge ports, whose frames meet the physdev forms). Then,
// with real drivers, NFLOG, tcpdump and palisadectl:
//   - `palisadectl flows` shows exactly one "ended" record per session, on
//     the server's endpoint and tap (not the bridge), inbound, in the connection's own direction,
//     naming the revision of the revoking change;
//   - palisade_driver_connections_ended_total on hv2 counts them, per family.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { createLab, type Lab, type LabTopology } from "../lab/lab.js";
import { createSessions, type Session, type Sessions } from "../lab/sessions.js";
import { BIN, eventually, palisadectl, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const HOSTS = ["hv1", "hv2"];
const METRICS = "127.0.0.1:9464"; // inside each hypervisor namespace

interface FlowJson {
  host: string; endpoint: string | null; interface: string; direction: string; src: string; dst: string; protocol: string;
  src_port: number | null; dst_port: number | null; verdict: string; decision: string; packets: number; revision?: number | null;
}

const TOPOLOGIES: LabTopology[] = ["routed", "bridged"];
for (const topology of TOPOLOGIES) describe(`ended connections are counted and shown with the revision that ended them (${topology} taps)`, () => {
  let lab: Lab;
  let sessions: Sessions;
  let t: Awaited<ReturnType<typeof startTestController>>;
  const dir = mkdtempSync(join(tmpdir(), `palisade-rvis-${topology}-`));
  let cf: Session, sf: Session;
  let revoking = 0;
  let T = 0;

  const endpoint = (name: string, profiles: string[]) => {
    const w = lab.workloads.get(name)!;
    return {
      kind: "Endpoint", host: w.hypervisor, orchestrator: "t", workload: name, id: "e", name: w.iface,
      state: "active", mac: w.mac, ipv4_nets: [`${w.ipv4}/32`], ipv6_nets: [`${w.ipv6}/128`], profile_ids: profiles,
    };
  };
  const docs = (srvInbound: object[]) => [
    { kind: "Profile", id: "cli", tags: ["cli"], inbound_rules: [], outbound_rules: [{}] },
    { kind: "Profile", id: "srv", tags: [], inbound_rules: srvInbound, outbound_rules: [{}] },
    endpoint("a", ["cli"]), endpoint("s", ["srv"]),
  ];

  async function apply(d: object[]): Promise<number> {
    const rev = (await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments(d).map(documentToPb) })).revision;
    await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      return HOSTS.every((name) => s.hosts.some((h) => h.hostname === name && h.inSync && h.appliedRevision >= rev && h.lastError === ""));
    }, { what: `all hosts applied revision ${rev}`, timeoutMs: 30_000, intervalMs: 20 });
    return rev;
  }

  async function ended(): Promise<FlowJson[]> {
    const r = await palisadectl(t.address, ["flows", "-o", "json", "--limit", "10000"]);
    if (r.code !== 0) throw new Error(`palisadectl flows failed (${r.code}): ${r.stderr}`);
    return (JSON.parse(r.stdout) as FlowJson[]).filter((x) => x.decision === "ended");
  }

  async function metric(hv: string, name: string): Promise<Record<string, number>> {
    const text = await lab.exec(lab.hypervisors.get(hv)!.ns, "curl", ["-s", `http://${METRICS}/metrics`]);
    const out: Record<string, number> = {};
    for (const line of text.split("\n")) {
      const m = new RegExp(`^${name}\\{family="(ipv[46])"\\} (\\d+)$`).exec(line);
      if (m) out[m[1]!] = Number(m[2]);
    }
    return out;
  }

  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName(topology === "routed" ? "rvis" : "rvib")}-`, { topology });
    await lab.addHypervisorPair();
    await lab.addWorkload("hv1", { name: "a", iface: "tapa", host: 10 });
    await lab.addWorkload("hv2", { name: "s", iface: "taps", host: 10 });
    t = await startTestController({ socket: join(dir, "ctl.sock") });
    for (const hv of HOSTS) {
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath,
        [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", hv, "--metrics-listen", METRICS],
        { logFile: join(dir, `driver-${hv}.log`) });
    }
    await apply(docs([{ protocol: "tcp" }]));
    sessions = createSessions(lab);
    cf = await sessions.open({ kind: "tcp-cf", family: 4, client: "a", server: "s", port: 7000 });
    sf = await sessions.open({ kind: "tcp-sf", family: 6, client: "a", server: "s", port: 7001 });
    // Nothing ended before the revocation (the admitted sessions are not reported).
    expect(await ended()).toEqual([]);
    revoking = await apply(docs([]));
    T = Date.now();
  }, 120_000);
  afterAll(async () => {
    try {
      sessions?.stopAll();
    } finally {
      try { await lab?.destroy(); } finally { await t?.stop(); }
    }
  });

  it("palisadectl flows shows exactly one ended record per revoked session, with the revoking revision", async () => {
    const s = lab.workloads.get("s")!, a = lab.workloads.get("a")!;
    await eventually(async () => (await ended()).length >= 2, { what: "two ended records", timeoutMs: 20_000, intervalMs: 250 });
    // Both sessions keep retransmitting meanwhile: still one report each.
    await new Promise((r) => setTimeout(r, Math.max(0, T + 5_000 - Date.now())));
    const records = (await ended()).map((r) => ({
      host: r.host, endpoint: r.endpoint, interface: r.interface, direction: r.direction, src: r.src, dst: r.dst, protocol: r.protocol,
      dst_port: r.dst_port, verdict: r.verdict, packets: r.packets, revision: r.revision,
    })).sort((x, y) => (x.dst_port ?? 0) - (y.dst_port ?? 0));
    expect(records).toEqual([
      { host: "hv2", endpoint: "hv2/t/s/e", interface: "taps", direction: "inbound", src: a.ipv4, dst: s.ipv4, protocol: "tcp", dst_port: 7000, verdict: "deny", packets: 1, revision: revoking },
      { host: "hv2", endpoint: "hv2/t/s/e", interface: "taps", direction: "inbound", src: a.ipv6, dst: s.ipv6, protocol: "tcp", dst_port: 7001, verdict: "deny", packets: 1, revision: revoking },
    ]);
    // The sessions really were cut (the records are about what happened).
    expect(cf.rxAfter(T + 1_000).length + sf.rxAfter(T + 1_000).length).toBe(0);
  }, 60_000);

  it("the table shows the revision that ended them", async () => {
    const r = await palisadectl(t.address, ["flows", "--host", "hv2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n").filter((l) => l.includes(`connection ended: revoked by revision ${revoking}`))).toHaveLength(2);
  });

  it("palisade_driver_connections_ended_total counts them, per family (read from the kernel, exact)", async () => {
    let last: Record<string, number> = {};
    await eventually(async () => {
      last = await metric("hv2", "palisade_driver_connections_ended_total");
      return last.ipv4 === 1 && last.ipv6 === 1;
    }, { what: "ended connections counted on hv2", timeoutMs: 25_000, intervalMs: 500 }).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(last)}`); });
    // The client's host judged nothing ended (its outbound rules still admit them).
    const hv1 = await metric("hv1", "palisade_driver_connections_ended_total");
    expect((hv1.ipv4 ?? 0) + (hv1.ipv6 ?? 0)).toBe(0);
  }, 40_000);
});
