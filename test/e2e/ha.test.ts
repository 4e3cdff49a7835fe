// High availability: two controller replicas on a three-member etcd cluster,
// drivers given both replicas. During a stream of writes, one replica and one
// etcd member are killed (SIGKILL). No acknowledged write may be lost, and
// every driver must converge on the final model.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { startEtcdCluster } from "../lab/etcd-process.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";

const dir = mkdtempSync(join(tmpdir(), "palisade-ha-"));
const socks = [join(dir, "c0.sock"), join(dir, "c1.sock")];
let cluster: Awaited<ReturnType<typeof startEtcdCluster>>;
let lab: Lab;
const replicas: ResultPromise[] = [];
const clients = socks.map((s) => createClients(`unix:${s}`));

const web = (port: number) => ({ kind: "Profile", id: "web", tags: ["web"], inbound_rules: [{ protocol: "tcp", dst_ports: [port] }], outbound_rules: [{}] });

/** Applies through whichever replica answers; resolves with the revision once acknowledged. */
async function write(docs: unknown[]): Promise<number> {
  const documents = parseDocuments(docs).map(documentToPb);
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const c of clients) {
      try {
        return (await call(c.policy, c.policy.apply, { deletes: [], documents }, 3_000)).revision;
      } catch { /* try the other replica */ }
    }
    if (Date.now() > deadline) throw new Error("no replica accepted the write for 30s");
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("HA: replicas and etcd members fail during writes", () => {
  beforeAll(async () => {
    requireBuild();
    cluster = await startEtcdCluster({ dataDir: join(dir, "etcd"), members: 3, name: uniqueName("ha") });
    const prefix = `/${uniqueName("ha")}`;
    for (const [i, s] of socks.entries()) {
      replicas.push(execa(process.execPath, [BIN.controller, "--insecure", "--etcd-endpoints", cluster.urls.join(","), "--listen", `unix:${s}`, "--etcd-prefix", prefix], {
        reject: false, stdout: { file: join(dir, `controller-${i}.log`) }, stderr: { file: join(dir, `controller-${i}.log`) },
      }));
    }
    lab = createLab(`${uniqueName("ha")}-`);
    for (const hv of ["hv1", "hv2"]) {
      const ns = (await lab.addHypervisor(hv)).ns;
      lab.spawnIn(ns, process.execPath, [BIN.driver, "--insecure", "--controller", socks.map((s) => `unix:${s}`).join(","), "--hostname", hv], { logFile: join(dir, `driver-${hv}.log`) });
    }
    await write([web(10000), ...["hv1", "hv2"].map((h) => ({ kind: "Endpoint", host: h, orchestrator: "t", workload: "w", id: "e", name: "tapw", state: "active", ipv4_nets: [h === "hv1" ? "198.18.1.10" : "198.18.2.10"], profile_ids: ["web"] }))]);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const r of replicas) r.kill("SIGKILL");
    await lab?.destroy();
    await cluster?.stop();
  });

  it("loses no acknowledged write and every driver converges", async () => {
    const acked: { i: number; revision: number }[] = [];
    for (let i = 1; i <= 36; i++) {
      if (i === 12) replicas[0]!.kill("SIGKILL");
      if (i === 24) await cluster.members[0]!.stop();
      const revision = await write([web(10000 + i), { kind: "Profile", id: `w${i}`, tags: [], inbound_rules: [], outbound_rules: [] }]);
      acked.push({ i, revision });
    }
    expect(acked).toHaveLength(36);
    // Revisions only grow: every acknowledged write is ordered after the previous one.
    for (let k = 1; k < acked.length; k++) expect(acked[k]!.revision).toBeGreaterThan(acked[k - 1]!.revision);

    const survivor = clients[1]!;
    const listed = await call(survivor.policy, survivor.policy.listProfiles, {});
    const ids = new Set(listed.profiles.map((p) => p.id));
    for (const a of acked) expect(ids.has(`w${a.i}`), `w${a.i}`).toBe(true);
    const final = acked.at(-1)!.revision;

    await eventually(async () => {
      const s = await call(survivor.status, survivor.status.getStatus, {});
      return ["hv1", "hv2"].every((h) => s.hosts.some((x) => x.hostname === h && x.inSync && x.appliedRevision >= final));
    }, { timeoutMs: 60_000, what: "both drivers at the final revision" });
    for (const hv of ["hv1", "hv2"]) {
      const rules = await lab.exec(lab.hypervisors.get(hv)!.ns, "iptables", ["-S", "pal-pi-web"]);
      expect(rules).toContain("--dports 10036");
      expect(rules).not.toContain("--dports 10035");
    }
  }, 180_000);
});
