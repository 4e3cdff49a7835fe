#!/usr/bin/env node
// palisade-driver --controller ADDR[,ADDR…] --hostname NAME [--interface-prefix tap[,…]] [--metrics-listen HOST:PORT] [--no-end-revoked-connections]
// palisade-driver --cleanup
// Runs in the network namespace it is started in (ip netns exec NS palisade-driver …).
import { Command } from "commander";
import { hostname } from "node:os";
import { EXIT_USAGE, UsageError, envDefault, fail, parseHostPort, withUsageExit } from "../runtime/cli-env.js";
import { createLogger } from "../runtime/logger.js";
import { ID_RE } from "../model/index.js";
import { detectBackend, type Backend } from "./kernel/backend.js";
import { createExecRunner } from "./kernel/command-runner.js";
import { createDataplane } from "./apply/dataplane.js";
import { startDriver } from "./driver.js";
import { createDriverMetrics } from "./metrics.js";
import { createFlowMetrics } from "./flows/flow-metrics.js";
import { routeGrpcLogs } from "../runtime/grpc-server.js";
import { addTlsOptions, tlsFlagsOf, silenceIpServerNameWarning, channelCredentials, loadTls, type TlsFlags, type TlsMaterial } from "../runtime/tls.js";
import { startMetricsServer } from "../runtime/metrics-server.js";

const program = new Command("palisade-driver")
  .description("Palisade driver: programs this host's iptables and ipsets from the controller's state and reports status.")
  .option("--controller <addrs>", "comma-separated controller addresses HOST:PORT (env PALISADE_CONTROLLER)", envDefault("PALISADE_CONTROLLER", "127.0.0.1:50051"))
  .option("--hostname <name>", "this host's name in the model (env PALISADE_HOSTNAME)", envDefault("PALISADE_HOSTNAME", hostname()))
  .option("--interface-prefix <prefixes>", "workload interface prefixes (env PALISADE_INTERFACE_PREFIX)", envDefault("PALISADE_INTERFACE_PREFIX", "tap"))
  .option("--metrics-listen <host:port>", "Prometheus metrics / health HTTP address (env PALISADE_METRICS_LISTEN)", envDefault("PALISADE_METRICS_LISTEN"))
  .option("--iptables-backend <backend>", "auto, nft or legacy (env PALISADE_IPTABLES_BACKEND)", envDefault("PALISADE_IPTABLES_BACKEND", "auto"))
  .option("--no-ipv6", "do not program ip6tables")
  .option("--drift-check-seconds <n>", "periodic read-back interval (env PALISADE_DRIFT_CHECK_SECONDS)", envDefault("PALISADE_DRIFT_CHECK_SECONDS", "30"))
  .option("--flow-logs <mode>", "flow reports: denied (every dropped new flow) or all (also admitted new flows) (env PALISADE_FLOW_LOGS)", envDefault("PALISADE_FLOW_LOGS", "denied"))
  .option("--flow-log-rate <n>", "flow reports per second per IP family, this host's kernel token bucket (env PALISADE_FLOW_LOG_RATE)", envDefault("PALISADE_FLOW_LOG_RATE", "100"))
  .option("--flow-log-burst <n>", "flow reports allowed in a burst above the rate (env PALISADE_FLOW_LOG_BURST)", envDefault("PALISADE_FLOW_LOG_BURST", "200"))
  .option("--flow-log-file <path>", "also write flow records as JSON lines to PATH, '-' for stdout (env PALISADE_FLOW_LOG_FILE)", envDefault("PALISADE_FLOW_LOG_FILE"))
  .option("--no-ipset-session", "one `ipset restore` per apply instead of a long-lived `ipset -` session for set member changes (DESIGN §6.7)")
  .option("--no-end-revoked-connections", "leave open connections alone when the policy stops admitting them (default: they end within a second, DESIGN §6.14)")
  .option("--cleanup", "remove every chain, hook and ipset Palisade programmed in this namespace, then exit")
  .option("--log-level <level>", "trace, debug, info, warn, error (env PALISADE_LOG_LEVEL)", envDefault("PALISADE_LOG_LEVEL", "info"))
  .showHelpAfterError();
addTlsOptions(program, "this host's client (CN = --hostname, OU=host)");
silenceIpServerNameWarning();
withUsageExit(program);
program.parse();
const opts = program.opts<{
  controller: string; hostname: string; interfacePrefix: string; metricsListen?: string; iptablesBackend: string;
  ipv6: boolean; driftCheckSeconds: string; cleanup?: boolean; logLevel: string;
  flowLogs: string; flowLogRate: string; flowLogBurst: string; flowLogFile?: string; endRevokedConnections: boolean; ipsetSession: boolean;
} & TlsFlags>();
let tls: TlsMaterial | undefined;

let controllers: string[] = [];
let prefixes: string[] = [];
let driftMs = 30_000;
let flowRate = 100;
let flowBurst = 200;
try {
  controllers = opts.controller.split(",").map((s) => s.trim()).filter(Boolean).map((a) => parseHostPort(a, "--controller"));
  if (!controllers.length) throw new UsageError("--controller: at least one address is required");
  prefixes = opts.interfacePrefix.split(",").map((s) => s.trim()).filter(Boolean);
  if (!prefixes.length || prefixes.some((p) => !/^[A-Za-z0-9_-]{1,12}$/.test(p))) throw new UsageError("--interface-prefix: 1-12 characters of letters, digits, '_' or '-' each");
  if (opts.metricsListen) parseHostPort(opts.metricsListen, "--metrics-listen");
  if (!ID_RE.test(opts.hostname)) throw new UsageError("--hostname may contain only letters, digits, '_', '.' and '-'");
  if (!["auto", "nft", "legacy"].includes(opts.iptablesBackend)) throw new UsageError("--iptables-backend must be auto, nft or legacy");
  driftMs = Number(opts.driftCheckSeconds) * 1000;
  if (!Number.isFinite(driftMs) || driftMs < 1000 || driftMs > 3_600_000) throw new UsageError("--drift-check-seconds must be 1-3600");
  if (opts.flowLogs !== "denied" && opts.flowLogs !== "all") throw new UsageError("--flow-logs must be denied or all");
  flowRate = Number(opts.flowLogRate);
  // -m limit refuses rates above 10,000/s; 0 would mean "no reports", which --flow-logs does not offer.
  if (!Number.isInteger(flowRate) || flowRate < 1 || flowRate > 10_000) throw new UsageError("--flow-log-rate must be an integer 1-10000 (reports per second per IP family)");
  flowBurst = Number(opts.flowLogBurst);
  if (!Number.isInteger(flowBurst) || flowBurst < 1 || flowBurst > 10_000) throw new UsageError("--flow-log-burst must be an integer 1-10000");
  if (opts.flowLogFile !== undefined && opts.flowLogFile.trim() === "") throw new UsageError("--flow-log-file needs a path, or '-' for stdout");
  // --cleanup talks to nobody: it needs no credentials.
  if (!opts.cleanup) tls = loadTls(tlsFlagsOf(program));
} catch (e) {
  fail((e as Error).message, e instanceof UsageError ? EXIT_USAGE : 1);
}

const logger = createLogger({ name: "palisade-driver", level: opts.logLevel }).child({ host: opts.hostname });
const runner = createExecRunner();
const families = opts.ipv6 ? ([4, 6] as const) : ([4] as const);

if (opts.cleanup) {
  try {
    const backend = opts.iptablesBackend === "auto" ? await detectBackend(runner) : (opts.iptablesBackend as Backend);
    const r = await createDataplane({ runner, backend, families: [...families], logger }).cleanup();
    process.stdout.write(`removed ${r.chainsRemoved} chains and ${r.ipsetLines} ipsets (${backend} backend)\n`);
    process.exit(0);
  } catch (err) {
    fail(`palisade-driver --cleanup: ${(err as Error).message}`);
  }
}

try {
  routeGrpcLogs(logger);
  const metrics = createDriverMetrics();
  const flowMetrics = createFlowMetrics(metrics.registry);
  const driver = await startDriver({
    controllers, hostname: opts.hostname, interfacePrefixes: prefixes, runner, logger,
    backend: opts.iptablesBackend as Backend | "auto", families: [...families], driftCheckMs: driftMs, metrics,
    credentials: channelCredentials(tls),
    flows: { mode: opts.flowLogs as "denied" | "all", ratePerSecond: flowRate, burst: flowBurst, logFile: opts.flowLogFile, metrics: flowMetrics },
    endRevokedConnections: opts.endRevokedConnections,
    ipsetSession: opts.ipsetSession,
  });
  if (!tls) logger.warn("gRPC is plaintext (--insecure): the controller is not authenticated");
  const http = opts.metricsListen
    ? await startMetricsServer({
      listen: opts.metricsListen, registry: metrics.registry, logger,
      // Never ready while workload traffic bypasses it (DESIGN §9.3).
      ready: async () => (driver.hostProblem ? { ok: false, detail: driver.hostProblem }
        : driver.inSync ? { ok: true, detail: `in sync: revision ${driver.appliedRevision}` } : { ok: false, detail: "not in sync with a controller yet" }),
    })
    : undefined;
  logger.info({ controllers, backend: driver.backend, prefixes }, "driver started");
  const shutdown = (signal: string) => {
    logger.info({ signal }, "stopping; rules stay in place");
    // A bounded exit: whatever hangs, SIGTERM ends the process (rules stay).
    setTimeout(() => { logger.warn("shutdown took too long; exiting"); process.exit(0); }, 4_000).unref();
    Promise.all([driver.stop(), http?.close()]).then(() => process.exit(0), () => process.exit(1));
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
} catch (err) {
  logger.fatal({ err }, "driver failed to start");
  fail(`palisade-driver: ${(err as Error).message}`);
}
