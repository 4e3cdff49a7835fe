// The driver's life with real packets: a restart opens no window and does
// not interrupt allowed traffic; losing the controller keeps the last state
// in force and the driver fails over to another replica; a failed apply is
// reported, retried, and never opens anything.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createExecRunner, type CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { startDriver } from "../../services/driver/driver.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const dir = mkdtempSync(join(tmpdir(), "palisade-lifecycle-"));
const sockA = join(dir, "a.sock");
const sockB = join(dir, "b.sock");
const prefix = `/${uniqueName("lc")}`;
let lab: Lab;
let A: Awaited<ReturnType<typeof startTestController>> | undefined;
let B: Awaited<ReturnType<typeof startTestController>> | undefined;

const profiles = (allow81: boolean) => [
  { kind: "Profile", id: "srv", tags: ["srv"], inbound_rules: [{ protocol: "tcp", src_tag: "cli", dst_ports: allow81 ? [80, 81] : [80] }], outbound_rules: [{}] },
  { kind: "Profile", id: "cli", tags: ["cli"], inbound_rules: [], outbound_rules: [{}] },
];
const ep = (host: string, wl: string, iface: string, ip: string, profile: string) =>
  ({ kind: "Endpoint", host, orchestrator: "t", workload: wl, id: "e", name: iface, state: "active", ipv4_nets: [ip], profile_ids: [profile] });

async function apply(via: NonNullable<typeof A>, docs: unknown[]): Promise<number> {
  return (await call(via.clients.policy, via.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) })).revision;
}

async function hostAt(via: NonNullable<typeof A>, host: string, rev: number) {
  return eventually(async () => {
    const s = await call(via.clients.status, via.clients.status.getStatus, {});
    const h = s.hosts.find((x) => x.hostname === host);
    return h && h.inSync && h.appliedRevision >= rev ? h : undefined;
  }, { timeoutMs: 30_000, what: `${host} at ${rev}` });
}

describe("driver life cycle", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("lc")}-`);
    await lab.addHypervisor("hv1");
    await lab.addWorkload("hv1", { name: "srv", iface: "tapsrv", host: 10 });
    await lab.addWorkload("hv1", { name: "cli", iface: "tapcli", host: 11 });
    await lab.listen("srv", [80, 81]);
    A = await startTestController({ prefix, socket: sockA });
  });
  afterAll(async () => {
    await lab?.destroy();
    await A?.stop();
    await B?.stop();
  });

  it("a driver restart opens no window for denied traffic and does not interrupt allowed traffic", async () => {
    const ns = lab.hypervisors.get("hv1")!.ns;
    const args = [BIN.driver, "--insecure", "--controller", `unix:${sockA},unix:${sockB}`, "--hostname", "hv1"];
    const d1 = lab.spawnIn(ns, process.execPath, args, { logFile: join(dir, "d1.log") });
    const w = lab.workloads;
    const rev = await apply(A!, [...profiles(false), ep("hv1", "srv", "tapsrv", w.get("srv")!.ipv4, "srv"), ep("hv1", "cli", "tapcli", w.get("cli")!.ipv4, "cli")]);
    await hostAt(A!, "hv1", rev);
    const probing = lab.probeLoop("cli", "srv", [80, 81], 7_000);
    await new Promise((r) => setTimeout(r, 1_500));
    d1.kill("SIGTERM");
    await d1;
    const d2 = lab.spawnIn(ns, process.execPath, args, { logFile: join(dir, "d2.log") });
    expect(d2.pid).toBeGreaterThan(0);
    const counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[81]!.timeout).toBeGreaterThan(3);
    expect(counts[80]!.timeout + counts[80]!.error + counts[80]!.refused).toBe(0);
    expect(counts[80]!.open).toBeGreaterThan(3);
    await hostAt(A!, "hv1", rev);
  });

  it("losing the controller keeps the last state; the driver fails over and reconciles", async () => {
    B = await startTestController({ prefix, socket: sockB });
    const probing = lab.probeLoop("cli", "srv", [80, 81], 4_000);
    await A!.stop();
    A = undefined;
    const counts = await probing;
    expect(counts[81]!.open).toBe(0);
    expect(counts[80]!.timeout).toBe(0);
    // Without any new write, B reports the host in sync: the fresh snapshot is
    // acknowledged although it changes nothing in the kernel.
    const before = (await call(B.clients.policy, B.clients.policy.getRevision, {})).revision;
    const seen = await hostAt(B, "hv1", before);
    expect(seen!.connected).toBe(true);
    // Reconnected to B: a change made through B reaches the kernel.
    const rev = await apply(B, profiles(true));
    const h = await hostAt(B, "hv1", rev);
    expect(h!.controller).not.toBe("");
    await eventually(async () => (await lab.probeTcp("cli", "srv", 81)) === "open", { what: "81 allowed after failover" });
  });

  it("a failed apply is reported, retried with backoff, and opens nothing meanwhile", async () => {
    await lab.addHypervisor("hv9");
    await lab.addWorkload("hv9", { name: "srv9", iface: "tapsrv9", host: 10 });
    await lab.addWorkload("hv9", { name: "cli9", iface: "tapcli9", host: 11 });
    await lab.listen("srv9", [80, 82]);
    const real = createExecRunner({ netns: lab.hypervisors.get("hv9")!.ns });
    let failing = false;
    const runner: CommandRunner = {
      // The tamper watch (nft) then watches hv9's namespace, and knows our own restores.
      execPrefix: real.execPrefix,
      run(cmd, args, input, ro) {
        if (failing && cmd.includes("tables") && cmd.endsWith("restore")) return Promise.reject(new Error("injected failure: iptables-restore"));
        return real.run(cmd, args, input, ro);
      },
    };
    const driver = await startDriver({ controllers: [`127.0.0.1:${B!.controller.port}`], hostname: "hv9", runner, logger: createLogger({ name: "t", level: "silent" }), readInterface: async () => "up" });
    try {
      const w = lab.workloads;
      const rev1 = await apply(B!, [ep("hv9", "srv9", "tapsrv9", w.get("srv9")!.ipv4, "srv"), ep("hv9", "cli9", "tapcli9", w.get("cli9")!.ipv4, "cli")]);
      await hostAt(B!, "hv9", rev1);
      expect(await lab.probeTcp("cli9", "srv9", 80)).toBe("open");
      expect(await lab.probeTcp("cli9", "srv9", 82)).toBe("timeout");
      // A change only a chain rewrite can carry out, while iptables-restore fails.
      failing = true;
      const wider = profiles(true);
      (wider[0]!.inbound_rules[0] as { dst_ports: number[] }).dst_ports = [80, 81, 82];
      const rev2 = await apply(B!, wider);
      const errored = await eventually(async () => {
        const s = await call(B!.clients.status, B!.clients.status.getStatus, {});
        return s.hosts.find((x) => x.hostname === "hv9" && x.lastError.includes("injected"));
      }, { what: "error status" });
      expect(errored!.appliedRevision).toBeLessThan(rev2);
      expect(await lab.probeTcp("cli9", "srv9", 82)).toBe("timeout");
      expect(await lab.probeTcp("cli9", "srv9", 80)).toBe("open"); // last programmed state still enforced
      expect(driver.counters.applyFailures).toBeGreaterThan(0);
      failing = false;
      const ok = await hostAt(B!, "hv9", rev2);
      expect(ok!.lastError).toBe("");
      expect(await lab.probeTcp("cli9", "srv9", 82)).toBe("open");
    } finally {
      await driver.stop();
    }
  });
});
