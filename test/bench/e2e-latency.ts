// e2e: API write -> applied by a real driver in a namespace -> reported back
// (host status in etcd, seen through StatusService.WatchStatus).
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { channelCredentials } from "../../services/runtime/tls.js";
import { startController } from "../../services/controller/controller.js";
import type { WatchStatusResponse } from "../../services/gen/palisade/status/v1/status.js";
import { startEtcd } from "../lab/etcd-process.js";
import { createLab } from "../lab/lab.js";
import { parseDocuments } from "../../services/model/index.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import { orAbort } from "./deadline.js";
import { summarize } from "./stats.js";

/** With tls: the whole path under mTLS (certificates from deploy/tls/palisade-certs.sh). */
export async function benchE2e(opts: { samples: number; endpoints: number; tls?: boolean; signal?: AbortSignal }) {
  const dir = mkdtempSync(join(tmpdir(), "palisade-bench-"));
  const pki = join(dir, "pki");
  if (opts.tls) {
    const certs = join(packageRoot(), "deploy/tls/palisade-certs.sh");
    await execa("bash", [certs, pki, "init"]);
    await execa("bash", [certs, pki, "host", "hv1"]);
  }
  const material = (name: string) => ({ cert: readFileSync(join(pki, `${name}.crt`)), key: readFileSync(join(pki, `${name}.key`)), ca: readFileSync(join(pki, "ca.crt")) });
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const socket = join(dir, "ctl.sock");
  const controller = await startController({
    etcdEndpoints: [etcd.url], listen: `127.0.0.1:0,unix:${socket}`, logger: createLogger({ name: "bench", level: "silent" }),
    tls: opts.tls ? material("controller") : undefined,
  });
  const lab = createLab(`pb${process.pid.toString(36)}${opts.tls ? "t" : ""}-`);
  const clients = createClients(`127.0.0.1:${controller.port}`, channelCredentials(opts.tls ? material("admin-admin") : undefined));
  try {
    const hv = await lab.addHypervisor("hv1");
    const driverBin = join(packageRoot(), "dist/services/driver/main.js");
    const security = opts.tls
      ? ["--tls-cert", join(pki, "host-hv1.crt"), "--tls-key", join(pki, "host-hv1.key"), "--tls-ca", join(pki, "ca.crt")]
      : ["--insecure"];
    lab.spawnIn(hv.ns, process.execPath, [driverBin, ...security, "--controller", `unix:${socket}`, "--hostname", "hv1"], { logFile: join(dir, "driver.log") });
    // A host with some state: N endpoints over a few profiles.
    const base: unknown[] = [];
    for (let p = 0; p < 10; p++) base.push({ kind: "Profile", id: `p${p}`, tags: [`t${p}`], inbound_rules: [{ protocol: "tcp", src_tag: `t${(p + 1) % 10}`, dst_ports: [80 + p] }], outbound_rules: [{}] });
    for (let e = 0; e < opts.endpoints; e++) {
      base.push({ kind: "Endpoint", host: "hv1", orchestrator: "bench", workload: `w${e}`, id: "e", name: `tap${e}`, state: "active", ipv4_nets: [`198.18.${1 + (e >> 8)}.${e & 255}`], profile_ids: [`p${e % 10}`] });
    }
    const applyDocs = (raw: unknown[]) => call(clients.policy, clients.policy.apply, { deletes: [], documents: parseDocuments(raw).map(documentToPb) });

    let applied = 0;
    let waiter: { rev: number; resolve: () => void } | undefined;
    const stream = clients.status.watchStatus({});
    stream.on("data", (m: WatchStatusResponse) => {
      for (const h of m.hosts) if (h.hostname === "hv1" && h.inSync) applied = Math.max(applied, h.appliedRevision);
      if (waiter && applied >= waiter.rev) waiter.resolve();
    });
    stream.on("error", () => undefined);
    const until = (rev: number) => orAbort(new Promise<void>((resolve) => {
      if (applied >= rev) return resolve();
      waiter = { rev, resolve };
    }), opts.signal, () => `waiting for hv1 to report revision ${rev} applied (applied so far: ${applied})`);

    const first = await applyDocs(base);
    await until(first.revision);
    const samples: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      const t0 = performance.now();
      const r = await applyDocs([{ kind: "Profile", id: "p0", tags: ["t0"], inbound_rules: [{ protocol: "tcp", src_tag: "t1", dst_ports: [1000 + i] }], outbound_rules: [{}] }]);
      await until(r.revision);
      samples.push(performance.now() - t0);
    }
    stream.cancel();
    return summarize(samples);
  } finally {
    clients.close();
    await lab.destroy();
    await controller.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
