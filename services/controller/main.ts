#!/usr/bin/env -S node --max-semi-space-size=64
// (--max-semi-space-size: a larger young generation keeps scavenges out of the
// calculation latency tail at cloud scale; figures in README "Performance".)
// palisade-controller --etcd-endpoints URL[,URL…] --listen HOST:PORT [--metrics-listen HOST:PORT]
import { Command } from "commander";
import { EXIT_USAGE, UsageError, envDefault, fail, parseHostPort, withUsageExit } from "../runtime/cli-env.js";
import { createLogger } from "../runtime/logger.js";
import { routeGrpcLogs } from "../runtime/grpc-server.js";
import { addTlsOptions, tlsFlagsOf, silenceIpServerNameWarning, loadTls, readPem, type TlsFlags, type TlsMaterial } from "../runtime/tls.js";
import { startController, type EtcdTls } from "./controller.js";
import { parseDuration } from "./compactor.js";

const program = new Command("palisade-controller")
  .description("Palisade controller: validates and stores the model in etcd, computes each host's dataplane state, streams it to drivers.")
  .option("--etcd-endpoints <urls>", "comma-separated etcd endpoints (env PALISADE_ETCD_ENDPOINTS)", envDefault("PALISADE_ETCD_ENDPOINTS", "http://127.0.0.1:2379"))
  .option("--listen <host:port>", "gRPC listen address(es), HOST:PORT or unix:/path, comma-separated (env PALISADE_LISTEN)", envDefault("PALISADE_LISTEN", "127.0.0.1:50051"))
  .option("--metrics-listen <host:port>", "Prometheus metrics / health HTTP address (env PALISADE_METRICS_LISTEN)", envDefault("PALISADE_METRICS_LISTEN"))
  .option("--etcd-prefix <prefix>", "etcd key prefix (env PALISADE_ETCD_PREFIX)", envDefault("PALISADE_ETCD_PREFIX", "/palisade/v1"))
  .option("--workload-to-host <action>", "workload -> host traffic: drop or accept (env PALISADE_WORKLOAD_TO_HOST)", envDefault("PALISADE_WORKLOAD_TO_HOST", "drop"))
  .option("--log-level <level>", "trace, debug, info, warn, error (env PALISADE_LOG_LEVEL)", envDefault("PALISADE_LOG_LEVEL", "info"))
  .option("--etcd-cacert <file>", "CA that signed etcd's server certificate; turns on TLS to etcd (env PALISADE_ETCD_CACERT)", envDefault("PALISADE_ETCD_CACERT"))
  .option("--etcd-cert <file>", "client certificate for etcd, when etcd requires one (env PALISADE_ETCD_CERT)", envDefault("PALISADE_ETCD_CERT"))
  .option("--etcd-key <file>", "its private key (env PALISADE_ETCD_KEY)", envDefault("PALISADE_ETCD_KEY"))
  .option("--etcd-compaction-retention <duration>", "etcd history kept by the elected replica's compaction, e.g. 5m; 0 = off, when etcd compacts itself (env PALISADE_ETCD_COMPACTION_RETENTION)", envDefault("PALISADE_ETCD_COMPACTION_RETENTION", "5m"))
  .showHelpAfterError();
addTlsOptions(program, "the controller's server");
silenceIpServerNameWarning();
withUsageExit(program);
program.parse();
const opts = program.opts<{
  etcdEndpoints: string; listen: string; metricsListen?: string; etcdPrefix: string; workloadToHost: string; logLevel: string;
  etcdCacert?: string; etcdCert?: string; etcdKey?: string; etcdCompactionRetention: string;
} & TlsFlags>();
let compactionRetentionMs = 0;
let tls: TlsMaterial | undefined;
let etcdTls: EtcdTls | undefined;

try {
  for (const a of opts.listen.split(",")) parseHostPort(a.trim(), "--listen");
  if (opts.workloadToHost !== "drop" && opts.workloadToHost !== "accept") throw new UsageError("--workload-to-host must be drop or accept");
  if (!opts.etcdPrefix.startsWith("/")) throw new UsageError("--etcd-prefix must start with /");
  if (opts.metricsListen && opts.metricsListen.startsWith("unix:")) throw new UsageError("--metrics-listen takes HOST:PORT");
  if (opts.metricsListen) parseHostPort(opts.metricsListen, "--metrics-listen");
  try {
    compactionRetentionMs = parseDuration(opts.etcdCompactionRetention);
  } catch (e) {
    throw new UsageError(`--etcd-compaction-retention: ${(e as Error).message}`);
  }
  if (compactionRetentionMs > 0 && compactionRetentionMs < 10_000) throw new UsageError("--etcd-compaction-retention must be 0 (off) or at least 10s: watchers that fall behind need time to resume");
  tls = loadTls(tlsFlagsOf(program));
  if (opts.etcdCert || opts.etcdKey) {
    if (!opts.etcdCacert) throw new UsageError("--etcd-cert/--etcd-key need --etcd-cacert");
    if (!opts.etcdCert || !opts.etcdKey) throw new UsageError("--etcd-cert and --etcd-key go together");
  }
  if (opts.etcdCacert) {
    etcdTls = { ca: readPem(opts.etcdCacert, "--etcd-cacert") };
    if (opts.etcdCert) Object.assign(etcdTls, { cert: readPem(opts.etcdCert, "--etcd-cert"), key: readPem(opts.etcdKey!, "--etcd-key") });
  }
} catch (e) {
  fail((e as Error).message, e instanceof UsageError ? EXIT_USAGE : 1);
}

const logger = createLogger({ name: "palisade-controller", level: opts.logLevel });
routeGrpcLogs(logger);
try {
  const controller = await startController({
    etcdEndpoints: opts.etcdEndpoints.split(",").map((s) => s.trim()).filter(Boolean),
    listen: opts.listen,
    etcdPrefix: opts.etcdPrefix,
    workloadToHost: opts.workloadToHost as "drop" | "accept",
    metricsListen: opts.metricsListen,
    logger,
    tls,
    etcdTls,
    etcdCompaction: { retentionMs: compactionRetentionMs },
  });
  const shutdown = (signal: string) => {
    logger.info({ signal }, "shutting down");
    // Streams get a grace period inside stop(); past that, exit regardless.
    setTimeout(() => { logger.warn("shutdown took too long; exiting"); process.exit(0); }, 9_000).unref();
    controller.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
} catch (err) {
  logger.fatal({ err }, "controller failed to start");
  fail(`palisade-controller: ${(err as Error).message}`);
}
