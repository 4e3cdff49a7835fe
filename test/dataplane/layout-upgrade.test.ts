// Moving a host between dataplane layouts (DESIGN §6.5) with real packets:
// a host programmed with the per-endpoint layout ("chains") is taken over by
// a controller rendering the set-based layout, and back (rollback). A
// continuous probe shows no denied flow passing and no allowed flow
// interrupted while the driver moves.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { createLab, type Lab } from "../lab/lab.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type Ctl = Awaited<ReturnType<typeof startTestController>>;

const dir = mkdtempSync(join(tmpdir(), "palisade-layout-"));
const sockA = join(dir, "a.sock");
const sockB = join(dir, "b.sock");
const prefix = `/${uniqueName("lu")}`;
let lab: Lab;
const controllers: Ctl[] = [];

async function hostAt(via: Ctl, replica: string, host: string, rev: number) {
  return eventually(async () => {
    const s = await call(via.clients.status, via.clients.status.getStatus, {});
    const h = s.hosts.find((x) => x.hostname === host);
    return h && h.inSync && h.appliedRevision >= rev && h.controller === replica ? h : undefined;
  }, { timeoutMs: 30_000, what: `${host} at ${rev} on ${replica}` });
}

describe("dataplane layout upgrade and rollback", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("lu")}-`);
    await lab.addHypervisor("hv1");
    await lab.addWorkload("hv1", { name: "srv", iface: "tapsrv", host: 10 });
    await lab.addWorkload("hv1", { name: "cli", iface: "tapcli", host: 11 });
    await lab.listen("srv", [80, 81]);
  });
  afterAll(async () => {
    await lab?.destroy();
    for (const c of controllers) await c.stop().catch(() => undefined);
  });

  it("chains -> sets -> chains: no window for denied traffic, no interruption of allowed traffic", async () => {
    const ns = lab.hypervisors.get("hv1")!.ns;
    const A = await startTestController({ prefix, socket: sockA, extra: { dataplaneLayout: "chains", replicaId: "layout-chains" } });
    controllers.push(A);
    lab.spawnIn(ns, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${sockA},unix:${sockB}`, "--hostname", "hv1"], { logFile: join(dir, "driver.log") });
    const w = lab.workloads;
    const docs = [
      { kind: "Profile", id: "srv", tags: ["srv"], inbound_rules: [{ protocol: "tcp", src_tag: "cli", dst_ports: [80] }], outbound_rules: [{}] },
      { kind: "Profile", id: "cli", tags: ["cli"], inbound_rules: [], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "srv", id: "e", name: "tapsrv", state: "active", ipv4_nets: [w.get("srv")!.ipv4], profile_ids: ["srv"], mac: w.get("srv")!.mac },
      { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "cli", id: "e", name: "tapcli", state: "active", ipv4_nets: [w.get("cli")!.ipv4], profile_ids: ["cli"], mac: w.get("cli")!.mac },
    ];
    const rev = (await call(A.clients.policy, A.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) })).revision;
    await hostAt(A, "layout-chains", "hv1", rev);
    const save = () => lab.exec(ns, "iptables-save", ["-t", "filter"]);
    expect(await save()).toContain(":pal-tw-tapsrv");
    expect(await lab.probeTcp("cli", "srv", 80)).toBe("open");
    expect(await lab.probeTcp("cli", "srv", 81)).toBe("timeout");

    // Upgrade: a replica rendering the set-based layout takes the host over.
    let probing = lab.probeLoop("cli", "srv", [80, 81], 8_000);
    const B = await startTestController({ prefix, socket: sockB, extra: { dataplaneLayout: "sets", replicaId: "layout-sets" } });
    controllers.push(B);
    await A.stop();
    controllers.splice(controllers.indexOf(A), 1);
    await hostAt(B, "layout-sets", "hv1", rev);
    let counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[80]!.timeout + counts[80]!.error + counts[80]!.refused).toBe(0);
    expect(counts[80]!.open).toBeGreaterThan(3);
    let text = await save();
    expect(text).not.toMatch(/:pal-(tw|fw|td|fd)-/);
    expect(text).toMatch(/:pal-ct_/);
    expect(await lab.exec(ns, "ipset", ["list", "-n"])).toMatch(/pal4ic_/);

    // Rollback: a replica rendering the per-endpoint layout takes it back.
    probing = lab.probeLoop("cli", "srv", [80, 81], 8_000);
    const C = await startTestController({ prefix, socket: sockA, extra: { dataplaneLayout: "chains", replicaId: "layout-chains-2" } });
    controllers.push(C);
    await B.stop();
    controllers.splice(controllers.indexOf(B), 1);
    await hostAt(C, "layout-chains-2", "hv1", rev);
    counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[80]!.timeout + counts[80]!.error + counts[80]!.refused).toBe(0);
    text = await save();
    expect(text).toContain(":pal-tw-tapsrv");
    expect(text).not.toMatch(/:pal-c[ft]_/);
    // The classification sets went with the layout.
    await eventually(async () => !/pal[46]i/.test(await lab.exec(ns, "ipset", ["list", "-n"])), { what: "classification sets destroyed" });
  });
});
