// The walking skeleton's end-to-end test: real etcd, the real controller,
// palisadectl and driver binaries, two hypervisor namespaces joined by a
// routed link, workloads behind tap veths, real TCP connections.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLab, type Lab } from "../lab/lab.js";
import { BIN, eventually, palisadectl, requireBuild, startControllerProcess, uniqueName } from "../support/binaries.js";

const prefix = `${uniqueName("e2e")}-`;
let lab: Lab;
let controller: ReturnType<typeof startControllerProcess>;
let addr: string;
const dir = mkdtempSync(join(tmpdir(), "palisade-e2e-"));

function endpoint(host: string, wl: string, iface: string, ipv4: string, ipv6: string, mac: string, profiles: string[]) {
  return { kind: "Endpoint", host, orchestrator: "test", workload: wl, id: `${wl}-eth0`, name: iface, state: "active", mac, ipv4_nets: [ipv4], ipv6_nets: [ipv6], profile_ids: profiles };
}

async function applyAndWait(docs: unknown[]): Promise<number> {
  const r = await palisadectl(addr, ["apply", "-f", "-"], JSON.stringify(docs));
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const rev = Number(/revision (\d+)/.exec(r.stdout)![1]);
  const w = await palisadectl(addr, ["wait", "--revision", String(rev), "--timeout", "30"]);
  expect(w.code, w.stderr).toBe(0);
  return rev;
}

describe("db-user example across two hypervisors", () => {
  beforeAll(async () => {
    requireBuild();
    lab = createLab(prefix);
    await lab.addHypervisorPair();
    await lab.addWorkload("hv1", { name: "db", iface: "tapdb0001", host: 10 });
    await lab.addWorkload("hv1", { name: "other", iface: "tapot0001", host: 11 });
    await lab.addWorkload("hv2", { name: "app", iface: "tapap0001", host: 20 });
    await lab.listen("db", [5432, 5433]);

    const socket = join(dir, "controller.sock");
    controller = startControllerProcess({ etcd: inject("etcdUrl"), listen: `127.0.0.1:0,unix:${socket}`, prefix: `/${prefix}e2e`, logFile: join(dir, "controller.log") });
    // The controller listens on port 0 for TCP; palisadectl uses the socket.
    addr = `unix:${socket}`;
    await eventually(async () => (await palisadectl(addr, ["status"])).code === 0, { what: "controller up" });
    for (const hv of ["hv1", "hv2"]) {
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", hv, "--drift-check-seconds", "5"], { logFile: join(dir, `driver-${hv}.log`) });
    }
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.filter((h: { in_sync: boolean }) => h.in_sync).length === 2;
    }, { what: "both drivers in sync", timeoutMs: 30_000 });

    const w = lab.workloads;
    const db = w.get("db")!, other = w.get("other")!, app = w.get("app")!;
    await applyAndWait([
      { kind: "Profile", id: "db", tags: ["db"], inbound_rules: [{ action: "allow", protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{ action: "allow" }] },
      { kind: "Profile", id: "app", tags: ["db-user"], inbound_rules: [], outbound_rules: [{ action: "allow" }] },
      { kind: "Profile", id: "other", tags: ["other"], inbound_rules: [], outbound_rules: [{ action: "allow" }] },
      endpoint("hv1", "db", db.iface, db.ipv4, db.ipv6, db.mac, ["db"]),
      endpoint("hv1", "other", other.iface, other.ipv4, other.ipv6, other.mac, ["other"]),
      endpoint("hv2", "app", app.iface, app.ipv4, app.ipv6, app.mac, ["app"]),
    ]);
  });

  afterAll(async () => {
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
  });

  it("admits a db-user member on the other host (IPv4 and IPv6)", async () => {
    expect(await lab.probeTcp("app", "db", 5432)).toBe("open");
    expect(await lab.probeTcp("app", "db", 5432, { family: 6 })).toBe("open");
  });

  it("refuses a non-member on the same host", async () => {
    expect(await lab.probeTcp("other", "db", 5432)).toBe("timeout");
    expect(await lab.probeTcp("other", "db", 5432, { family: 6 })).toBe("timeout");
  });

  it("refuses a member on another port", async () => {
    expect(await lab.probeTcp("app", "db", 5433)).toBe("timeout");
  });

  it("admits endpoints once their profile gains the tag, without restarting anything", async () => {
    const t0 = performance.now();
    await applyAndWait([{ kind: "Profile", id: "other", tags: ["other", "db-user"], inbound_rules: [], outbound_rules: [{ action: "allow" }] }]);
    const waited = performance.now() - t0;
    await eventually(async () => (await lab.probeTcp("other", "db", 5432)) === "open", { timeoutMs: 10_000, what: "other admitted" });
    console.log(`apply -> all hosts applied (palisadectl apply + wait, incl. two node start-ups): ${waited.toFixed(0)} ms`);
    // And the tag removed again closes it.
    await applyAndWait([{ kind: "Profile", id: "other", tags: ["other"], inbound_rules: [], outbound_rules: [{ action: "allow" }] }]);
    expect(await lab.probeTcp("other", "db", 5432)).toBe("timeout");
  });

  it("reports endpoint interface status back", async () => {
    const s = await palisadectl(addr, ["status", "-o", "json"]);
    const eps = JSON.parse(s.stdout).endpoints as { endpoint: string; state: string }[];
    expect(eps.find((e) => e.endpoint === "hv1/test/db/db-eth0")?.state).toBe("up");
    expect(eps.find((e) => e.endpoint === "hv2/test/app/app-eth0")?.state).toBe("up");
  });
});
