// Mutual TLS, host identity and API authorisation, against a real controller
// and real certificates made by deploy/tls/palisade-certs.sh.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createClients, RpcError } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { channelCredentials, type TlsMaterial } from "../../services/runtime/tls.js";
import { packageRoot } from "../../services/runtime/package-root.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments, splitDocuments } from "../../services/model/index.js";
import { startEtcd, type EtcdProcess } from "../lab/etcd-process.js";
import { startController } from "../../services/controller/controller.js";
import { createLogger } from "../../services/runtime/logger.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const CERTS = join(packageRoot(), "deploy/tls/palisade-certs.sh");
const dir = mkdtempSync(join(tmpdir(), "palisade-tls-"));
const pki = join(dir, "pki");
const rogue = join(dir, "rogue");

const material = (base: string, name: string, caDir = base): TlsMaterial => ({
  cert: readFileSync(join(base, `${name}.crt`)), key: readFileSync(join(base, `${name}.key`)), ca: readFileSync(join(caDir, "ca.crt")),
});
const creds = (name: string, base = pki) => channelCredentials(material(base, name));
const tlsFlags = (name: string, base = pki) => ["--tls-cert", join(base, `${name}.crt`), "--tls-key", join(base, `${name}.key`), "--tls-ca", join(base, "ca.crt")];

const MODEL = `
kind: Profile
id: web
tags: [web]
inbound_rules: [{action: allow, protocol: tcp, dst_ports: [80]}]
outbound_rules: [{action: allow}]
---
kind: Endpoint
host: hv1
orchestrator: k8s
workload: a
id: e1
name: tapAlpha1
state: active
ipv4_nets: [198.18.7.1/32]
profile_ids: [web]
---
kind: Endpoint
host: hv2
orchestrator: k8s
workload: b
id: e2
name: tapBravo2
state: active
ipv4_nets: [198.18.7.2/32]
profile_ids: [web]
`;

async function ctl(address: string, flags: string[], args: string[], input?: string) {
  const r = await execa(process.execPath, [BIN.ctl, "--controller", address, ...flags, ...args], { reject: false, input, env: { NO_COLOR: "1", PALISADE_INSECURE: "" } });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Opens a sync stream as `certName`, says hello as `hostname`; resolves on in-sync or on an error. */
function syncAs(address: string, credentials: grpc.ChannelCredentials, hostname: string) {
  const client = new DataplaneSyncServiceClient(address, credentials);
  const stream = client.sync();
  const updates: unknown[] = [];
  const done = new Promise<{ inSync: boolean; error?: grpc.ServiceError }>((resolve) => {
    stream.on("data", (b: SyncResponse) => {
      updates.push(...b.updates);
      if (b.inSync) resolve({ inSync: true });
    });
    stream.on("error", (error: grpc.ServiceError) => resolve({ inSync: false, error }));
  });
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: "t", ipv6: false, iptablesBackend: "nft", features: [...DRIVER_FEATURES] } } });
  return { done, updates, close() { stream.cancel(); client.close(); } };
}

let t: Awaited<ReturnType<typeof startTestController>>;

beforeAll(async () => {
  requireBuild();
  await execa("bash", [CERTS, pki, "init"]);
  for (const [role, name] of [["host", "hv1"], ["host", "hv2"], ["reader", "mon"]]) await execa("bash", [CERTS, pki, role!, name!]);
  // A certificate from our CA that carries no Palisade role.
  const ext = join(dir, "norole.ext");
  writeFileSync(ext, "extendedKeyUsage=clientAuth\n");
  await execa("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(pki, "norole.key"), "-out", join(dir, "norole.csr"), "-subj", "/O=palisade/OU=tenant/CN=eve"]);
  await execa("openssl", ["x509", "-req", "-in", join(dir, "norole.csr"), "-CA", join(pki, "ca.crt"), "-CAkey", join(pki, "ca.key"), "-CAcreateserial", "-days", "2", "-out", join(pki, "norole.crt"), "-extfile", ext]);
  // Another CA entirely: same names, same roles, not ours.
  await execa("bash", [CERTS, rogue, "init"]);
  await execa("bash", [CERTS, rogue, "host", "hv1"]);
  t = await startTestController({ tls: material(pki, "controller"), clientCredentials: creds("admin-admin"), metricsListen: "127.0.0.1:0" });
  await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments(splitDocuments(MODEL)).map(documentToPb) });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("API authorisation by certificate role", () => {
  it("an admin certificate changes policy through palisadectl", async () => {
    const r = await ctl(t.address, tlsFlags("admin-admin"), ["apply", "-f", "-"], "kind: Profile\nid: extra\n");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/applied 1 document/);
  });

  it("a reader may get, list, status, trace and flows, but is refused a write and a delete", async () => {
    const reader = tlsFlags("reader-mon");
    const get = await ctl(t.address, reader, ["get", "profiles", "-o", "json"]);
    expect(get.code).toBe(0);
    expect(get.stdout).toContain('"web"');
    expect((await ctl(t.address, reader, ["get", "endpoints"])).code).toBe(0);
    expect((await ctl(t.address, reader, ["status", "-o", "json"])).code).toBe(0);
    const trace = await ctl(t.address, reader, ["trace", "--from", "198.18.7.2", "--to", "198.18.7.1", "--protocol", "tcp", "--dst-port", "80"]);
    expect(trace.code).toBe(0);
    expect(trace.stdout).toMatch(/allow/i);
    const flows = await ctl(t.address, reader, ["flows", "-o", "json"]);
    expect(flows.code).toBe(0);
    expect(JSON.parse(flows.stdout)).toEqual([]);

    const write = await ctl(t.address, reader, ["apply", "-f", "-"], "kind: Profile\nid: sneaky\n");
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(/permission denied: role 'reader' \(mon\) may not call palisade\.policy\.v1\.PolicyService\/apply/);
    const del = await ctl(t.address, reader, ["delete", "profile", "web"]);
    expect(del.code).toBe(1);
    expect(del.stderr).toMatch(/permission denied/);
    const metrics = await (await fetch(`http://127.0.0.1:${t.controller.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/palisade_controller_permission_denied_total\{method="palisade\.policy\.v1\.PolicyService\/apply"\} [1-9]/);
    expect(metrics).toMatch(/palisade_controller_permission_denied_total\{method="palisade\.policy\.v1\.PolicyService\/delete"\} [1-9]/);
    // Nothing changed: 'sneaky' does not exist and 'web' is still there.
    const after = await ctl(t.address, reader, ["get", "profiles", "-o", "json"]);
    expect(after.stdout).not.toContain("sneaky");
    expect(after.stdout).toContain('"web"');
  });

  it("a host certificate may not read policy, and a certificate without a role may do nothing", async () => {
    for (const name of ["host-hv1", "norole"]) {
      const c = createClients(t.address, creds(name));
      const err = await call(c.policy, c.policy.listProfiles, {}).catch((e: RpcError) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(grpc.status.PERMISSION_DENIED);
      expect((err as RpcError).message).toMatch(name === "norole" ? /no single Palisade role/ : /role 'host' \(hv1\)/);
      c.close();
      // Flow records are for readers and admins too: a host sees none of them.
      const flows = await ctl(t.address, tlsFlags(name), ["flows"]);
      expect(flows.code).toBe(1);
      expect(flows.stderr).toMatch(/permission denied/);
    }
  });

});

describe("transport: only our CA, only with a client certificate", () => {
  const listFails = async (credentials: grpc.ChannelCredentials) => {
    const c = createClients(t.address, credentials);
    const err = await call(c.policy, c.policy.listProfiles, {}, 5_000).catch((e: RpcError) => e);
    c.close();
    return err;
  };

  it("refuses a plaintext client, a client without a certificate, and a certificate from another CA", async () => {
    for (const credentials of [
      grpc.credentials.createInsecure(),
      grpc.credentials.createSsl(readFileSync(join(pki, "ca.crt"))),
      channelCredentials({ ...material(rogue, "admin-admin"), ca: readFileSync(join(pki, "ca.crt")) }),
    ]) {
      const err = await listFails(credentials);
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(grpc.status.UNAVAILABLE);
    }
  });

  it("a client does not trust a controller whose certificate another CA signed", async () => {
    const impostor = await startTestController({ tls: material(rogue, "controller"), clientCredentials: creds("admin-admin") });
    try {
      const err = await call(impostor.clients.policy, impostor.clients.policy.listProfiles, {}, 5_000).catch((e: RpcError) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      await impostor.stop();
    }
  });
});

describe("host identity on the sync stream", () => {
  it("a host certificate gets its own host's state, and only that", async () => {
    const s = syncAs(t.address, creds("host-hv1"), "hv1");
    const r = await s.done;
    s.close();
    expect(r.error?.details).toBeUndefined();
    expect(r.inSync).toBe(true);
    const text = JSON.stringify(s.updates);
    expect(text).toContain("tapAlpha1");
    expect(text).not.toContain("tapBravo2");
    expect(text).not.toContain("198.18.7.2"); // hv2's address is in no set hv1 uses
  });

  it("a driver presenting another host's certificate gets nothing, and nothing is created for it", async () => {
    const before = t.controller.graph.hostNames();
    const s = syncAs(t.address, creds("host-hv1"), "hv2");
    const r = await s.done;
    s.close();
    expect(r.inSync).toBe(false);
    expect(r.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.error?.details).toMatch(/certificate is for host 'hv1', not 'hv2'/);
    expect(s.updates).toEqual([]);
    expect(t.controller.graph.hostNames().sort()).toEqual(before.sort());
    const status = await call(t.clients.status, t.clients.status.getStatus, {});
    expect(status.hosts.map((h) => h.hostname)).not.toContain("hv2");
  });

  it("an admin or reader certificate cannot open a sync stream; a rogue CA's host certificate cannot connect", async () => {
    for (const name of ["admin-admin", "reader-mon"]) {
      const s = syncAs(t.address, creds(name), "hv1");
      const r = await s.done;
      s.close();
      expect(r.error?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(s.updates).toEqual([]);
    }
    const s = syncAs(t.address, channelCredentials({ ...material(rogue, "host-hv1"), ca: readFileSync(join(pki, "ca.crt")) }), "hv1");
    const r = await s.done;
    s.close();
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe("binaries refuse to guess about transport security", () => {
  const run = async (bin: string, args: string[], env: Record<string, string> = {}) => {
    const r = await execa(process.execPath, [bin, ...args], { reject: false, timeout: 20_000, env: { PALISADE_INSECURE: "", PALISADE_TLS_CERT: "", PALISADE_TLS_KEY: "", PALISADE_TLS_CA: "", ...env } });
    return { code: r.exitCode, stderr: String(r.stderr) };
  };

  it("without --insecure or TLS files every binary exits 2 and says what to give", async () => {
    for (const [bin, args] of [
      [BIN.controller, ["--etcd-endpoints", "http://127.0.0.1:1"]],
      [BIN.driver, ["--controller", "127.0.0.1:1", "--hostname", "hv1"]],
      [BIN.ctl, ["--controller", "127.0.0.1:1", "get", "profiles"]],
    ] as const) {
      const r = await run(bin, [...args]);
      expect(r.code, `${bin}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/TLS is required: give --tls-cert, --tls-key and --tls-ca \(or --insecure for plaintext\)/);
    }
  });

  it("half a TLS configuration, or TLS mixed with --insecure, is a usage error; an unreadable file a failure", async () => {
    const half = await run(BIN.ctl, ["--controller", "127.0.0.1:1", "--tls-cert", join(pki, "admin-admin.crt"), "get", "profiles"]);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/needs all of --tls-cert, --tls-key and --tls-ca/);
    const mixed = await run(BIN.ctl, ["--controller", "127.0.0.1:1", "--insecure", ...tlsFlags("admin-admin"), "get", "profiles"]);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toMatch(/--insecure cannot be combined/);
    const missing = await run(BIN.ctl, ["--controller", "127.0.0.1:1", "--tls-cert", join(dir, "nope.crt"), "--tls-key", join(pki, "admin-admin.key"), "--tls-ca", join(pki, "ca.crt"), "get", "profiles"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--tls-cert: cannot read .*nope\.crt: ENOENT/);
  });

  it("the environment can carry the TLS settings; flags win over it in both directions", async () => {
    const env = { PALISADE_TLS_CERT: join(pki, "reader-mon.crt"), PALISADE_TLS_KEY: join(pki, "reader-mon.key"), PALISADE_TLS_CA: join(pki, "ca.crt") };
    const r = await run(BIN.ctl, ["--controller", t.address, "get", "profiles"], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // TLS files on the command line beat PALISADE_INSECURE=1 (what the quickstart exports).
    const tlsOverEnv = await run(BIN.ctl, ["--controller", t.address, ...tlsFlags("reader-mon"), "get", "profiles"], { PALISADE_INSECURE: "1" });
    expect(tlsOverEnv.stderr).toBe("");
    expect(tlsOverEnv.code).toBe(0);
    // --insecure on the command line beats TLS files from the environment: a
    // plaintext attempt, which this TLS controller refuses (not a usage error).
    const insecureOverEnv = await run(BIN.ctl, ["--controller", t.address, "--insecure", "get", "profiles"], env);
    expect(insecureOverEnv.code).toBe(1);
    expect(insecureOverEnv.stderr).toMatch(/cannot reach the controller/);
    // Both in the environment: ambiguous, refused.
    const both = await run(BIN.ctl, ["--controller", t.address, "get", "profiles"], { ...env, PALISADE_INSECURE: "1" });
    expect(both.code).toBe(2);
  });
});

describe("etcd over TLS", () => {
  let etcd: EtcdProcess | undefined;
  const etcdPki = join(dir, "etcd-pki");
  afterAll(async () => { await etcd?.stop(); });

  it("the controller reaches an etcd that requires client certificates, and fails clearly without one", async () => {
    await execa("bash", [CERTS, etcdPki, "init"]);
    etcd = await startEtcd({
      dataDir: join(dir, "etcd"),
      tls: {
        cert: join(etcdPki, "controller.crt"), key: join(etcdPki, "controller.key"), ca: join(etcdPki, "ca.crt"),
        clientCert: join(etcdPki, "admin-admin.crt"), clientKey: join(etcdPki, "admin-admin.key"),
      },
    });
    expect(etcd.url).toMatch(/^https:/);
    const logger = createLogger({ name: "t", level: "silent" });
    const prefix = `/${uniqueName("tls")}`;
    const good = await startController({
      etcdEndpoints: [etcd.url], listen: "127.0.0.1:0", etcdPrefix: prefix, logger, shutdownGraceMs: 200,
      etcdTls: { ca: readFileSync(join(etcdPki, "ca.crt")), cert: readFileSync(join(etcdPki, "admin-admin.crt")), key: readFileSync(join(etcdPki, "admin-admin.key")) },
    });
    try {
      const c = createClients(`127.0.0.1:${good.port}`);
      const r = await call(c.policy, c.policy.apply, { deletes: [], documents: parseDocuments(splitDocuments("kind: Profile\nid: over-tls\n")).map(documentToPb) });
      expect(r.changed).toBe(1);
      c.close();
    } finally {
      await good.stop();
    }
    // No client certificate: etcd refuses the handshake; start-up fails rather than serving nothing.
    const bad = startController({
      etcdEndpoints: [etcd.url], listen: "127.0.0.1:0", etcdPrefix: prefix, logger, shutdownGraceMs: 200,
      etcdTls: { ca: readFileSync(join(etcdPki, "ca.crt")) },
    });
    await expect(bad).rejects.toThrow(/cannot start: etcd at https:\/\/127\.0\.0\.1/);
  }, 60_000);

  it("the binary validates its etcd TLS flags", async () => {
    const r = await execa(process.execPath, [BIN.controller, "--insecure", "--etcd-endpoints", "https://127.0.0.1:1", "--etcd-cert", join(pki, "admin-admin.crt")], { reject: false, timeout: 20_000 });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/--etcd-cert\/--etcd-key need --etcd-cacert/);
  });
});

describe("host views", () => {
  it("a driver that says hello and leaves does not leave its host behind (plaintext, where any name can be said)", async () => {
    const plain = await startTestController();
    try {
      const names = Array.from({ length: 20 }, (_, i) => `ghost-${i}`);
      for (const n of names) {
        const s = syncAs(plain.address, grpc.credentials.createInsecure(), n);
        expect((await s.done).inSync).toBe(true);
        s.close();
      }
      await eventually(async () => names.every((n) => !plain.controller.graph.hostNames().includes(n)), { what: "ghost host views freed" });
      expect(plain.controller.graph.hostNames().filter((n) => n.startsWith("ghost-"))).toEqual([]);
    } finally {
      await plain.stop();
    }
  });
});

