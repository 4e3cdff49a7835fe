// Bridged workload ports (issue #20, first step): a hypervisor where the
// workloads' taps are ports of a Linux bridge (as the linuxbridge agent, or
// OVS's hybrid plug, builds it). With bridge-nf-call-iptables=1, bridged
// frames cross FORWARD with the bridge as -i/-o and the taps only as
// physdev: Palisade must see them and never let a denied flow pass (fail
// closed, DESIGN §6.3). With the sysctl off they never reach iptables: the
// host's status says so and the driver is not ready (DESIGN §9.3).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { EndpointState } from "../../services/contract/status.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const READY = "127.0.0.1:9464";

// Both backends: the physdev rules must be accepted, and read back without
// drift, by iptables-nft and iptables-legacy alike.
describe.each(["nft", "legacy"] as const)("bridged workload ports (%s)", (backend) => {
  let lab: Lab;
  let t: Awaited<ReturnType<typeof startTestController>>;
  const dir = mkdtempSync(join(tmpdir(), "palisade-bridged-"));

  async function hostStatus() {
    const s = await call(t.clients.status, t.clients.status.getStatus, {});
    return s.hosts.find((h) => h.hostname === "hv1");
  }

  /** The driver's HTTP (/readyz, /metrics) inside the hypervisor's namespace: [HTTP status, body]. */
  async function http(path: string): Promise<[number, string]> {
    const code = `fetch("http://${READY}${path}").then(async r=>console.log(JSON.stringify([r.status,await r.text()])),e=>console.log(JSON.stringify([0,String(e)])))`;
    return JSON.parse(await lab.exec(lab.hypervisors.get("hv1")!.ns, process.execPath, ["-e", code])) as [number, string];
  }

  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName(`br${backend[0]}`)}-`);
    await lab.addHypervisor("hv1");
    await lab.addBridge("hv1", "brpal0", { bridgeNf: true });
    await lab.addBridgedWorkload("hv1", { name: "a", iface: "tapbra", bridge: "brpal0", host: 10 });
    await lab.addBridgedWorkload("hv1", { name: "b", iface: "tapbrb", bridge: "brpal0", host: 11 });
    // A tap on the bridge without an endpoint.
    await lab.addBridgedWorkload("hv1", { name: "c", iface: "tapbrc", bridge: "brpal0", host: 12 });
    await lab.listen("a", [22, 80]);
  }, 60_000);
  afterAll(async () => {
    await lab?.destroy();
    await t?.stop();
  });

  it("without Palisade, b reaches a on tcp/22 over the bridge, IPv4 and IPv6 (the checks below can fail)", async () => {
    expect(await lab.probeTcp("b", "a", 22)).toBe("open");
    expect(await lab.probeTcp("b", "a", 22, { family: 6 })).toBe("open");
    expect(await lab.probeTcp("c", "a", 22)).toBe("open");
  });

  it("with bridge-nf-call-iptables=1, a denied port does not pass (fail closed), and the host reports in sync without error", async () => {
    t = await startTestController({ socket: join(dir, "ctl.sock") });
    const hv = lab.hypervisors.get("hv1")!;
    lab.spawnIn(hv.ns, process.execPath, [BIN.driver, "--insecure", "--controller", `unix:${join(dir, "ctl.sock")}`, "--hostname", "hv1", "--metrics-listen", READY, "--iptables-backend", backend],
      { logFile: join(dir, "driver.log") });
    const w = lab.workloads;
    const rev = (await call(t.clients.policy, t.clients.policy.apply, { deletes: [],
      documents: parseDocuments([
        { kind: "Profile", id: "web", tags: [], inbound_rules: [{ action: "allow", protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] },
        { kind: "Profile", id: "all", tags: [], inbound_rules: [{}], outbound_rules: [{}] },
        { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "a", id: "e", name: "tapbra", state: "active", ipv4_nets: [w.get("a")!.ipv4], ipv6_nets: [w.get("a")!.ipv6], profile_ids: ["web"] },
        { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "b", id: "e", name: "tapbrb", state: "active", ipv4_nets: [w.get("b")!.ipv4], ipv6_nets: [w.get("b")!.ipv6], profile_ids: ["all"] },
      ]).map(documentToPb),
    })).revision;
    await eventually(async () => {
      const h = await hostStatus();
      return h && h.inSync && h.appliedRevision >= rev;
    }, { what: "driver applied" });
    expect((await hostStatus())!.lastError).toBe("");
    expect((await http("/readyz"))[0]).toBe(200);
    // Denied by a's profile: dropped, not merely refused.
    expect(await lab.probeTcp("b", "a", 22)).toBe("timeout");
    expect(await lab.probeTcp("b", "a", 22, { family: 6 })).toBe("timeout");
    // A tap without an endpoint sends nothing.
    expect(await lab.probeTcp("c", "a", 22)).toBe("timeout");
    expect(await lab.probeTcp("c", "a", 80)).toBe("timeout");
    // Until bridged ports are enforced, their endpoints say why they get no traffic.
    await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      const a = s.endpoints.find((e) => e.endpointKey === "hv1/t/a/e");
      return a?.state === EndpointState.ENDPOINT_STATE_ERROR && a.detail.includes("port of a Linux bridge");
    }, { what: "endpoint a reported as a bridge port" });
    // The read-back after the writes (2 s) found the rules as written.
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_drift_repairs_total 0$/m);
  }, 60_000);

  it("with bridge-nf-call-iptables=0, the host's status carries the error and the driver is not ready; both clear when it is set again", async () => {
    await lab.setBridgeNf("hv1", false);
    const h = await eventually(async () => {
      const h = await hostStatus();
      return h?.lastError.includes("bridge-nf-call-iptables") ? h : undefined;
    }, { what: "host status names the sysctl" });
    expect(h!.lastError).toMatch(/NOT policed: tapbra, tapbrb, tapbrc are bridge ports/);
    const [code, body] = await http("/readyz");
    expect(code).toBe(503);
    expect(body).toContain("bridge-nf-call-iptables=0");
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_host_check_failing 1$/m);
    await lab.setBridgeNf("hv1", true);
    await eventually(async () => (await hostStatus())?.lastError === "", { what: "error cleared" });
    expect((await http("/readyz"))[0]).toBe(200);
    expect((await http("/metrics"))[1]).toMatch(/^palisade_driver_host_check_failing 0$/m);
  }, 60_000);
});
