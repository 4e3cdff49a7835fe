// Drift semantics on a real kernel (iptables-nft and ipset in a network
// namespace, the real controller): read-backs that meet a change the
// controller just sent do not count it as drift; a chain flushed behind the
// driver's back is counted once and repaired.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createExecRunner, type CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { createDriverMetrics } from "../../services/driver/metrics.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";
import { positionChain } from "../../services/calc/names.js";

let lab: Lab;
let ctl: Awaited<ReturnType<typeof startTestController>>;
let driver: Driver | undefined;

const docs = (port: number) => [
  { kind: "Profile", id: "web", tags: ["web"], inbound_rules: [{ protocol: "tcp", src_tag: "web", dst_ports: [port] }], outbound_rules: [{}] },
  { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "w", id: "e", name: "tapdw", state: "active", ipv4_nets: ["198.18.1.10"], profile_ids: ["web"] },
];
const apply = async (d: unknown[]) => (await call(ctl.clients.policy, ctl.clients.policy.apply, { deletes: [], documents: parseDocuments(d).map(documentToPb) })).revision;

describe("driver drift semantics (nft, namespace)", () => {
  beforeAll(async () => {
    lab = createLab(`${uniqueName("dr")}-`);
    await lab.addHypervisor("hv1");
    ctl = await startTestController();
  });
  afterAll(async () => {
    await driver?.stop();
    await ctl?.stop();
    await lab?.destroy();
  });

  it("a pending change met by a read-back is not drift; a flushed chain is counted once and repaired", async () => {
    const ns = lab.hypervisors.get("hv1")!.ns;
    const real = createExecRunner({ netns: ns });
    // A gate on iptables-restore keeps an apply running while the next
    // revision arrives and read-backs fall due.
    let gate: Promise<void> | undefined;
    let restores = 0;
    const runner: CommandRunner = {
      async run(cmd, args, input, ro) {
        if (cmd.endsWith("tables-nft-restore")) { restores++; if (gate) await gate; }
        return real.run(cmd, args, input, ro);
      },
    };
    const metrics = createDriverMetrics();
    const repairs = async () => (await metrics.driftRepairs.get()).values[0]?.value ?? 0;
    driver = await startDriver({
      controllers: [ctl.address], hostname: "hv1", runner, logger: createLogger({ name: "t", level: "silent" }), backend: "nft",
      // Read back often: every check during the held apply meets a pending revision.
      driftCheckMs: 200, postWriteCheckMs: 200, metrics, readInterface: async () => "up",
      // The periodic read-back is what this test exercises (the tamper watch has its own e2e test).
      rulesetMonitor: false,
    });
    const rev1 = await apply(docs(80));
    await eventually(async () => driver!.appliedRevision >= rev1, { what: "revision 1 applied" });

    let release!: () => void;
    gate = new Promise((r) => (release = r));
    const before = restores;
    const rev2 = await apply(docs(81));
    await eventually(async () => restores > before, { what: "revision 2 being applied" });
    const rev3 = await apply(docs(82));
    expect(rev3).toBeGreaterThan(rev2);
    await new Promise((r) => setTimeout(r, 700)); // three or so read-backs fall due while held
    gate = undefined;
    release();
    await eventually(async () => driver!.appliedRevision >= rev3, { what: "revision 3 applied" });
    expect(await lab.exec(ns, "iptables-nft", ["-S", "pal-pi-web"])).toMatch(/--dports? 82 /);
    await new Promise((r) => setTimeout(r, 600)); // and a few quiet read-backs after
    expect(driver.counters.driftRepairs).toBe(0);
    expect(await repairs()).toBe(0);

    // Tampering: the inbound chain of the endpoint's class is flushed.
    await lab.exec(ns, "iptables-nft", ["-F", positionChain("to", 0)]);
    await eventually(async () => (await repairs()) === 1, { what: "drift counted", timeoutMs: 5_000 });
    await eventually(async () => (await lab.exec(ns, "iptables-nft", ["-S", positionChain("to", 0)])).includes("pal-pi-web"), { what: "chain repaired" });
    await new Promise((r) => setTimeout(r, 600));
    expect(driver.counters.driftRepairs).toBe(1);
  });
});
