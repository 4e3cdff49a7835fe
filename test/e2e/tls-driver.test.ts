// The whole product under mTLS: controller, palisadectl and a real driver in a
// namespace, each with its own certificate from deploy/tls/palisade-certs.sh.
// A driver holding another host's certificate gets nothing: its workloads
// stay dropped (fail closed) and no status appears for the host it claims.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { packageRoot } from "../../services/runtime/package-root.js";
import { createLab, type Lab } from "../lab/lab.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";

const prefix = `${uniqueName("tls")}-`;
const dir = mkdtempSync(join(tmpdir(), "palisade-tls-e2e-"));
const pki = join(dir, "pki");
const socket = join(dir, "controller.sock");
const addr = `unix:${socket}`;
const tls = (name: string) => ["--tls-cert", join(pki, `${name}.crt`), "--tls-key", join(pki, `${name}.key`), "--tls-ca", join(pki, "ca.crt")];
let lab: Lab;
let controller: ResultPromise;

async function ctl(cert: string, args: string[], input?: string) {
  const r = await execa(process.execPath, [BIN.ctl, "--controller", addr, ...tls(cert), ...args], { reject: false, input, env: { NO_COLOR: "1" } });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function hosts(): Promise<{ hostname: string; in_sync: boolean }[]> {
  const s = await ctl("reader-mon", ["status", "-o", "json"]);
  expect(s.code, s.stderr).toBe(0);
  return JSON.parse(s.stdout).hosts;
}

describe("mTLS end to end with a real driver", () => {
  beforeAll(async () => {
    requireBuild();
    const certs = join(packageRoot(), "deploy/tls/palisade-certs.sh");
    await execa("bash", [certs, pki, "init"]);
    for (const [role, name] of [["host", "hv1"], ["host", "hv2"], ["reader", "mon"]]) await execa("bash", [certs, pki, role!, name!]);

    lab = createLab(prefix);
    await lab.addHypervisor("hv1");
    await lab.addWorkload("hv1", { name: "client", iface: "tapcl0001", host: 10 });
    await lab.addWorkload("hv1", { name: "server", iface: "tapsv0001", host: 11 });
    await lab.listen("server", [8080]);

    controller = execa(process.execPath, [BIN.controller, "--etcd-endpoints", inject("etcdUrl"), "--listen", `127.0.0.1:0,${addr}`, "--etcd-prefix", `/${prefix}tls`, ...tls("controller")], {
      reject: false, stdout: { file: join(dir, "controller.log") }, stderr: { file: join(dir, "controller.log") },
    });
    await eventually(async () => (await ctl("reader-mon", ["status"])).code === 0, { what: "controller up" });
    const w = lab.workloads;
    const ep = (name: string) => ({
      kind: "Endpoint", host: "hv1", orchestrator: "test", workload: name, id: `${name}-eth0`, name: w.get(name)!.iface, state: "active",
      mac: w.get(name)!.mac, ipv4_nets: [w.get(name)!.ipv4], ipv6_nets: [w.get(name)!.ipv6], profile_ids: ["open"],
    });
    const r = await ctl("admin-admin", ["apply", "-f", "-"], JSON.stringify([
      { kind: "Profile", id: "open", tags: ["open"], inbound_rules: [{ action: "allow", protocol: "tcp", dst_ports: [8080] }], outbound_rules: [{ action: "allow" }] },
      ep("client"), ep("server"),
    ]));
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);

  afterAll(async () => {
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a driver with hv2's certificate claiming hv1 is refused: no policy, no status, workloads dropped", async () => {
    const log = join(dir, "driver-wrong.log");
    const wrong = lab.spawnIn(lab.hypervisors.get("hv1")!.ns, process.execPath, [BIN.driver, "--controller", addr, "--hostname", "hv1", ...tls("host-hv2")], { logFile: log });
    await eventually(async () => readFileSync(log, "utf8").includes("controller refused this host"), { what: "driver logs the refusal", timeoutMs: 20_000 });
    expect(readFileSync(log, "utf8")).toMatch(/certificate is for host 'hv2', not 'hv1'/);
    expect((await hosts()).map((h) => h.hostname)).not.toContain("hv1");
    // Fail closed: the driver programmed its base chains and dropped the workload interfaces.
    expect(await lab.probeTcp("client", "server", 8080)).toBe("timeout");
    const controllerLog = readFileSync(join(dir, "controller.log"), "utf8");
    expect(controllerLog).toMatch(/sync refused/);
    wrong.kill("SIGTERM");
    await wrong;
  });

  it("the same driver with hv1's own certificate syncs and traffic flows", async () => {
    const right = lab.spawnIn(lab.hypervisors.get("hv1")!.ns, process.execPath, [BIN.driver, "--controller", addr, "--hostname", "hv1", ...tls("host-hv1")], { logFile: join(dir, "driver-right.log") });
    await eventually(async () => (await hosts()).some((h) => h.hostname === "hv1" && h.in_sync), { what: "hv1 in sync", timeoutMs: 30_000 });
    await eventually(async () => (await lab.probeTcp("client", "server", 8080)) === "open", { what: "client reaches server", timeoutMs: 10_000 });
    right.kill("SIGTERM");
    await right;
  });
});
