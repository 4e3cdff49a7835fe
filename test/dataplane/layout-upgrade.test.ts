// Upgrades on real iptables and ipset (DESIGN §6.2):
// - a kernel still holding the per-endpoint layout of earlier builds (a
//   fixture captured from the last commit that rendered it) is converted to
//   the set-based layout by today's controller and driver, with a
//   continuous probe showing no window: denied traffic never passes, allowed
//   traffic is never interrupted;
// - a second stream of the same host from a driver that announces no
//   feature (an older driver overlapping a newer one) is refused at hello and
//   changes nothing for the capable driver: a deleted endpoint's address is
//   never admitted afterwards.
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments } from "../../services/model/index.js";
import { createLab, type Lab } from "../lab/lab.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type Ctl = Awaited<ReturnType<typeof startTestController>>;

const FIXTURE = join(import.meta.dirname, "../fixtures/chains-layout");
const fixture = (f: string) => readFileSync(join(FIXTURE, f), "utf8");
const dir = mkdtempSync(join(tmpdir(), "palisade-layout-"));
const sock = join(dir, "c.sock");
const prefix = `/${uniqueName("lu")}`;
let lab: Lab;
let ctl: Ctl | undefined;
let ns = "";

async function hostAt(host: string, rev: number) {
  return eventually(async () => {
    const s = await call(ctl!.clients.status, ctl!.clients.status.getStatus, {});
    const h = s.hosts.find((x) => x.hostname === host);
    return h && h.inSync && h.appliedRevision >= rev ? h : undefined;
  }, { timeoutMs: 30_000, what: `${host} at ${rev}` });
}

describe("upgrades on a real dataplane", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("lu")}-`);
    ns = (await lab.addHypervisor("hv1")).ns;
    // The fixture's workloads: same interfaces, addresses and MACs.
    await lab.addWorkload("hv1", { name: "srv", iface: "tapsrv", host: 10, mac: "02:10:00:00:01:01" });
    await lab.addWorkload("hv1", { name: "cli", iface: "tapcli", host: 11, mac: "02:10:00:00:02:01" });
    expect([lab.workloads.get("srv")!.ipv4, lab.workloads.get("cli")!.ipv4]).toEqual(["198.18.1.10", "198.18.1.11"]);
    await lab.listen("srv", [80, 81]);
  });
  afterAll(async () => {
    await lab?.destroy();
    await ctl?.stop().catch(() => undefined);
  });

  it("a kernel holding the per-endpoint layout is converted to the set-based layout with no window", async () => {
    // The kernel as an earlier driver left it.
    await lab.exec(ns, "ipset", ["restore"], fixture("ipset.txt"));
    await lab.exec(ns, "iptables-restore", [], fixture("iptables.txt"));
    await lab.exec(ns, "ip6tables-restore", [], fixture("ip6tables.txt"));
    const save = () => lab.exec(ns, "iptables-save", ["-t", "filter"]);
    expect(await save()).toContain(":pal-tw-tapsrv");
    // It enforces the fixture's model: tcp/80 from cli admitted, 81 not.
    expect(await lab.probeTcp("cli", "srv", 80)).toBe("open");
    expect(await lab.probeTcp("cli", "srv", 81)).toBe("timeout");

    ctl = await startTestController({ prefix, socket: sock });
    const docs = JSON.parse(fixture("model.json")) as unknown[];
    const rev = (await call(ctl.clients.policy, ctl.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) })).revision;
    const probing = lab.probeLoop("cli", "srv", [80, 81], 8_000);
    await new Promise((r) => setTimeout(r, 500));
    lab.spawnIn(ns, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${sock}`, "--hostname", "hv1"], { logFile: join(dir, "driver.log") });
    await hostAt("hv1", rev);
    const counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[80]!.timeout + counts[80]!.error + counts[80]!.refused).toBe(0);
    expect(counts[80]!.open).toBeGreaterThan(3);
    const text = await save();
    expect(text).not.toMatch(/:pal-(tw|fw|td|fd)-/);
    expect(text).toMatch(/:pal-ct0 /);
    expect(await lab.exec(ns, "ip6tables-save", ["-t", "filter"])).not.toMatch(/:pal-(tw|fw|td|fd)-/);
    expect(await lab.exec(ns, "ipset", ["list", "-n"])).toMatch(/pal4i-active/);
  });

  it("a featureless second stream of the host is refused and never costs the capable driver an update: a deleted endpoint is never admitted again", async () => {
    // srv admits tcp/80 from anywhere: only classification keeps a deleted cli out.
    const open = (await call(ctl!.clients.policy, ctl!.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Profile", id: "srv", tags: ["srv"], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] },
    ]).map(documentToPb) })).revision;
    await hostAt("hv1", open);
    expect(await lab.probeTcp("cli", "srv", 80)).toBe("open");

    // An older driver of the same host connects beside the capable one.
    const client = new DataplaneSyncServiceClient(ctl!.address, grpc.credentials.createInsecure());
    const stream = client.sync();
    const got: SyncResponse[] = [];
    let ended: grpc.ServiceError | undefined;
    stream.on("data", (b: SyncResponse) => got.push(b));
    stream.on("error", (e: grpc.ServiceError) => { ended = e; });
    stream.write({ message: { $case: "hello", value: { hostname: "hv1", driverVersion: "old", ipv6: true, iptablesBackend: "nft", features: [] } } });
    try {
      await eventually(async () => ended !== undefined || got.some((b) => b.inSync), { what: "the old driver's stream answered" });
      const del = (await call(ctl!.clients.policy, ctl!.clients.policy.delete, {
        objects: [{ kind: { $case: "endpoint", value: { host: "hv1", orchestrator: "t", workload: "cli", id: "e" } } }], ignoreMissing: false,
      })).revision;
      // Probe whether or not the driver reports the revision applied: an
      // admitted packet is the failure, whatever the status says.
      const applied = await hostAt("hv1", del).then(() => true, () => false);
      const counts = await lab.probeLoop("cli", "srv", [80], 2_000);
      expect(counts[80]!.open).toBe(0);
      expect(applied).toBe(true);
      expect(ended?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(got).toEqual([]);
    } finally {
      stream.cancel();
      client.close();
    }
  });
});

describe("upgrades on a real dataplane: the class layout of the previous release", () => {
  const CLASS_FIXTURE = join(import.meta.dirname, "../fixtures/class-layout");
  const classFixture = (f: string) => readFileSync(join(CLASS_FIXTURE, f), "utf8");
  let lab2: Lab;
  let ctl2: Ctl | undefined;
  const sock2 = join(dir, "c2.sock");
  afterAll(async () => {
    await lab2?.destroy();
    await ctl2?.stop().catch(() => undefined);
  });

  it("a kernel holding the class layout is converted to the position layout with no window (DESIGN §6.5, mixed versions)", async () => {
    lab2 = createLab(`${uniqueName("ly")}-`);
    const ns2 = (await lab2.addHypervisor("hv1")).ns;
    await lab2.addWorkload("hv1", { name: "srv", iface: "tapsrv", host: 10, mac: "02:10:00:00:01:01" });
    await lab2.addWorkload("hv1", { name: "cli", iface: "tapcli", host: 11, mac: "02:10:00:00:02:01" });
    await lab2.listen("srv", [80, 81]);
    // The kernel as the previous release's driver left it (fixture README).
    await lab2.exec(ns2, "ipset", ["restore"], classFixture("ipset.txt"));
    await lab2.exec(ns2, "iptables-restore", [], classFixture("iptables.txt"));
    await lab2.exec(ns2, "ip6tables-restore", [], classFixture("ip6tables.txt"));
    const save = () => lab2.exec(ns2, "iptables-save", ["-t", "filter"]);
    expect(await save()).toMatch(/:pal-ct_/);
    expect(await lab2.probeTcp("cli", "srv", 80)).toBe("open");
    expect(await lab2.probeTcp("cli", "srv", 81)).toBe("timeout");

    ctl2 = await startTestController({ prefix: `/${uniqueName("ly")}`, socket: sock2 });
    const docs = JSON.parse(classFixture("model.json")) as unknown[];
    const rev = (await call(ctl2.clients.policy, ctl2.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) })).revision;
    const probing = lab2.probeLoop("cli", "srv", [80, 81], 8_000);
    await new Promise((r) => setTimeout(r, 500));
    lab2.spawnIn(ns2, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${sock2}`, "--hostname", "hv1"], { logFile: join(dir, "driver2.log") });
    await eventually(async () => {
      const s = await call(ctl2!.clients.status, ctl2!.clients.status.getStatus, {});
      const h = s.hosts.find((x) => x.hostname === "hv1");
      return h && h.inSync && h.appliedRevision >= rev ? h : undefined;
    }, { timeoutMs: 30_000, what: `hv1 at ${rev}` });
    const counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[80]!.timeout + counts[80]!.error + counts[80]!.refused).toBe(0);
    expect(counts[80]!.open).toBeGreaterThan(3);
    const text = await save();
    expect(text).not.toMatch(/:pal-c[ft]_|:pal-r[ft]_/);
    expect(text).toMatch(/:pal-ct0 /);
    const sets = await lab2.exec(ns2, "ipset", ["list", "-n"]);
    expect(sets).not.toMatch(/pal[46]ic_/);
    expect(sets).toMatch(/pal4i-active/);
  });
});
