#!/usr/bin/env node
// palisade-openstack — keeps Palisade in step with Neutron: security groups
// become profiles, bound compute ports become endpoints (translate.ts), and
// only what the adapter owns is created, updated or deleted (reconcile.ts),
// one transaction per sync (sync.ts).
//   sync --security-groups FILE --ports FILE [--address-groups FILE] [--operator-policy FILE] [--dry-run]
//   watch --neutron-url URL [--interval SECONDS] [--resync-interval SECONDS] [--change-feed auto|changed-since|revisions]
//         [--operator-policy FILE]  (re-read on SIGHUP; DESIGN §11.12)
//         [--network-log-file FILE]  (Neutron's logging API; DESIGN §11.13)
//         (token or Keystone password credentials; change-driven: watch.ts, DESIGN §11.7)
//   status [-o table|json]
// Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error.
import { formatTable } from "../runtime/cli-table.js";
import { Option } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { call, RpcError } from "../contract/clients.js";
import { formatIssue } from "../model/index.js";
import { cliClients, controllerProgram } from "../runtime/cli-clients.js";
import { endpointFromPb } from "../contract/model-wire.js";
import { EXIT_USAGE, UsageError, envDefault, fail, withUsageExit } from "../runtime/cli-env.js";
import { createLogger } from "../runtime/logger.js";
import { createBackoff, sleep } from "../util/backoff.js";
import { silenceIpServerNameWarning } from "../runtime/tls.js";
import { authFromEnv, createNeutronClient, NeutronApiError } from "./neutron-client.js";
import { portStatusRows } from "./port-status.js";
import { AdapterError, syncOnce, type SyncReport } from "./sync.js";
import {
  ORCHESTRATOR, TranslateError, formatTranslateIssue, parseAddressGroupsFile, parsePortsFile, parseSecurityGroupsFile, translate,
  type TranslateResult,
} from "./translate.js";
import { isOwned } from "./reconcile.js";
import { createAdapterMetrics } from "./metrics.js";
import { createWatcher, type ChangeFeed } from "./watch.js";
import { startMl2Endpoint, type Ml2View } from "./ml2-endpoint.js";
import { createLiveView, endpointsByPortOf } from "./ml2-view.js";
import { createPortTransitions } from "./port-transitions.js";
import { createPendingChanges } from "./pending-changes.js";
import { startMetricsServer } from "../runtime/metrics-server.js";
import { EMPTY_SELECTION, selectLogs, type LogSelection, type NeutronLog } from "./network-logs.js";
import { startNetworkLogWriter } from "./network-log-writer.js";
import type { NeutronPort } from "./neutron-types.js";
import { EMPTY_OPERATOR_POLICY, OperatorPolicyError, formatOperatorIssue, parseOperatorPolicyText, type OperatorPolicy } from "./operator-policy.js";

const program = controllerProgram("palisade-openstack", "OpenStack adapter: Neutron security groups and ports onto Palisade profiles and endpoints", {
  controllerHelp: "controller address HOST:PORT or unix:/path", certificateHelp: "client (OU=admin: the adapter writes policy)",
});

// The adapter reads every endpoint each sync: at 100,000 endpoints that is
// ~30 MiB, above the default 16 MiB receive limit.
const clients = () => cliClients(program, "palisade-openstack", { "grpc.max_receive_message_length": 512 * 1024 * 1024 });

const modeOf = (strict?: boolean) => ({ onProblem: strict ? "refuse" as const : "leave-out" as const });

function readJson(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (e) {
    throw new Error(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${flag}: ${file} is not JSON: ${(e as Error).message}`);
  }
}

const OPERATOR_POLICY_HELP = "operator profiles placed before (their deny cannot be overridden) or after every selected port's security groups: a YAML or JSON file (README \"OpenStack\", DESIGN §11.12; env PALISADE_OPENSTACK_OPERATOR_POLICY)";

/** The operator tier's file (none: the empty policy). Throws OperatorPolicyError: a bad file is refused whole. */
function readOperatorPolicy(file: string | undefined): OperatorPolicy {
  if (file === undefined || file === "") return EMPTY_OPERATOR_POLICY;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new OperatorPolicyError(file, [{ document: "file", field: "", reason: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  return parseOperatorPolicyText(text, file);
}

/** A URL fit for logs: no user:password@. */
function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    url.username = "";
    url.password = "";
    return url.toString();
  } catch {
    return "(unparsable URL)";
  }
}

function heldText(r: SyncReport): string {
  return `${r.heldBack.length} of the ${r.owned} endpoint(s) the adapter manages are gone from Neutron: a mass deletion (a wrong file, a token scoped to one project, or Neutron returning too little?), so these deletions are held back and everything else is applied; pass --allow-mass-delete if this is meant`;
}

function summary(r: SyncReport): string {
  const what = `${r.created} created, ${r.updated} updated, ${r.deleted} deleted, ${r.unchanged} unchanged, ${r.skipped} port(s) skipped${r.heldBack.length ? `, ${r.heldBack.length} deletion(s) held back` : ""}`;
  if (r.dryRun) return `dry run: would write ${what}`;
  if (r.transactions === 0) return `in sync: nothing to write (${what}), model revision ${r.revision}`;
  return `synced: ${what} in ${r.transactions} transaction(s), at revision ${r.revision}`;
}

function printWarnings(result: TranslateResult, verbose: boolean): void {
  for (const i of result.leftOut) process.stderr.write(`left out: ${formatTranslateIssue(i)}\n`);
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  if (verbose) for (const s of result.skipped) process.stderr.write(`skipped port ${s.port}: ${s.reason}\n`);
}

program.command("sync")
  .description("translate Neutron API list responses (files) and reconcile Palisade with them, in one transaction")
  .requiredOption("--security-groups <file>", "a GET /v2.0/security-groups response ({\"security_groups\": [...]})")
  .requiredOption("--ports <file>", "a GET /v2.0/ports response ({\"ports\": [...]}), listed with admin rights")
  .option("--address-groups <file>", "a GET /v2.0/address-groups response, to resolve remote_address_group_id")
  .option("--operator-policy <file>", OPERATOR_POLICY_HELP, envDefault("PALISADE_OPENSTACK_OPERATOR_POLICY"))
  .option("--dry-run", "print what would change; write nothing")
  .option("--strict", "refuse the whole sync when any rule, group or port cannot be translated (default: leave just those out, fail closed)")
  .option("--allow-mass-delete", "allow a sync that deletes most or all of the endpoints the adapter manages")
  .option("-v, --verbose", "also list skipped ports and each change")
  .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
  .action(async (o: {
    securityGroups: string; ports: string; addressGroups?: string; dryRun?: boolean; verbose?: boolean; output: string; strict?: boolean; allowMassDelete?: boolean;
    operatorPolicy?: string;
  }) => {
    const operatorPolicy = readOperatorPolicy(o.operatorPolicy);
    const result = translate({
      operatorPolicy,
      securityGroups: parseSecurityGroupsFile(readJson(o.securityGroups, "--security-groups")),
      ports: parsePortsFile(readJson(o.ports, "--ports")),
      addressGroups: o.addressGroups ? parseAddressGroupsFile(readJson(o.addressGroups, "--address-groups")) : undefined,
    }, modeOf(o.strict));
    printWarnings(result, !!o.verbose);
    const c = clients();
    try {
      const r = await syncOnce(c.policy, result, { dryRun: o.dryRun, allowMassDelete: o.allowMassDelete });
      if (r.heldBack.length) {
        process.stderr.write(`warning: ${heldText(r)}\n`);
        if (o.verbose) for (const k of r.heldBack) process.stderr.write(`  held back: delete endpoint ${k}\n`);
      }
      if (o.output === "json") {
        process.stdout.write(`${JSON.stringify({ ...r, warnings: result.warnings, skipped_ports: result.skipped, left_out: result.leftOut }, null, 2)}\n`);
      }
      else {
        if (o.dryRun || o.verbose) for (const ch of r.changes) process.stdout.write(`  ${ch}\n`);
        process.stdout.write(`${summary(r)}${result.leftOut.length ? `; ${result.leftOut.length} untranslatable rule(s)/group(s)/port(s) left out (see stderr)` : ""}\n`);
      }
    } finally {
      c.close();
    }
  });

program.command("fetch")
  .description("save complete Neutron listings (every page) as files for sync; token or Keystone credentials as for watch")
  .requiredOption("--neutron-url <url>", "Neutron endpoint (env PALISADE_NEUTRON_URL)", envDefault("PALISADE_NEUTRON_URL"))
  .requiredOption("--security-groups <file>", "where to write {\"security_groups\": [...]}")
  .requiredOption("--ports <file>", "where to write {\"ports\": [...]} (needs admin credentials)")
  .option("--address-groups <file>", "where to write {\"address_groups\": [...]}")
  .option("--os-token <token>", "a Keystone token (env OS_TOKEN); or the OS_* password credentials")
  .action(async (o: { neutronUrl: string; securityGroups: string; ports: string; addressGroups?: string; osToken?: string }) => {
    if (!/^https?:\/\/[^\s]+$/.test(o.neutronUrl ?? "")) throw new UsageError(`--neutron-url: expected http(s)://HOST:PORT, got '${o.neutronUrl}'`);
    let auth;
    try {
      auth = authFromEnv(process.env, { token: o.osToken });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    // The same client and order as watch: every page, ports before groups (see neutron-client.ts).
    const snap = await createNeutronClient({ url: o.neutronUrl, auth }).snapshot();
    const write = (file: string, body: unknown) => writeFileSync(file, `${JSON.stringify(body, null, 1)}\n`);
    write(o.ports, { ports: snap.ports });
    write(o.securityGroups, { security_groups: snap.securityGroups });
    if (o.addressGroups) write(o.addressGroups, { address_groups: snap.addressGroups ?? [] });
    process.stdout.write(`saved ${snap.ports.length} port(s), ${snap.securityGroups.length} security group(s)${o.addressGroups ? `, ${snap.addressGroups?.length ?? 0} address group(s)` : ""}\n`);
  });

program.command("watch")
  .description("follow Neutron's changes and keep Palisade in step (runs until SIGTERM)")
  .requiredOption("--neutron-url <url>", "Neutron endpoint, e.g. http://controller:9696 (env PALISADE_NEUTRON_URL)", envDefault("PALISADE_NEUTRON_URL"))
  .option("--interval <seconds>", "seconds between change checks, 0.2-86400 (env PALISADE_OPENSTACK_INTERVAL)", envDefault("PALISADE_OPENSTACK_INTERVAL", "1"))
  .option("--resync-interval <seconds>", "seconds between full listings of everything, the safety net; default 300, at least --interval (env PALISADE_OPENSTACK_RESYNC_INTERVAL)", envDefault("PALISADE_OPENSTACK_RESYNC_INTERVAL"))
  .option("--deletion-check-interval <seconds>", "changed-since feed: seconds between id listings that find deleted ports and groups; default 10, at least --interval")
  .addOption(new Option("--change-feed <feed>", "how changes are found: changed-since needs Neutron's filter_validation = false; revisions lists ids and revisions; auto picks changed-since when Neutron accepts it").choices(["auto", "changed-since", "revisions"]).default("auto"))
  .option("--os-token <token>", "a Keystone token (env OS_TOKEN); or the password credentials below")
  .option("--os-auth-url <url>", "Keystone URL (env OS_AUTH_URL)")
  .option("--os-username <name>", "(env OS_USERNAME)")
  .option("--os-password <password>", "(env OS_PASSWORD; prefer the environment over the command line)")
  .option("--os-project-name <name>", "(env OS_PROJECT_NAME)")
  .option("--os-user-domain-name <name>", "(env OS_USER_DOMAIN_NAME, default Default)")
  .option("--os-project-domain-name <name>", "(env OS_PROJECT_DOMAIN_NAME, default Default)")
  .option("--operator-policy <file>", `${OPERATOR_POLICY_HELP}; re-read on SIGHUP (a bad file is refused and the last good policy kept)`, envDefault("PALISADE_OPENSTACK_OPERATOR_POLICY"))
  .option("--network-log-file <file>", "Neutron's logging API (`openstack network log create`): read /v2.0/log/logs each poll and append one JSON line per flow record of a port an enabled log selects to this file ('-': stdout; reopened on SIGHUP; env PALISADE_OPENSTACK_NETWORK_LOG_FILE; DESIGN §11.13)", envDefault("PALISADE_OPENSTACK_NETWORK_LOG_FILE"))
  .option("--once", "one poll and sync, then exit (0 on success)")
  .option("--strict", "refuse a whole sync when anything cannot be translated (default: leave just that out)")
  .option("--allow-mass-delete", "apply endpoint deletions even when most of the adapter's endpoints would go (otherwise held back)")
  .option("--metrics-listen <host:port>", "Prometheus metrics / health HTTP address (env PALISADE_METRICS_LISTEN)", envDefault("PALISADE_METRICS_LISTEN"))
  .option("--ml2-listen <host:port>", "HTTP address the Palisade ML2 mechanism driver in neutron-server polls: host liveness, port readiness, change notices (env PALISADE_OPENSTACK_ML2_LISTEN; no authentication: keep it on loopback)", envDefault("PALISADE_OPENSTACK_ML2_LISTEN"))
  .option("--ml2-down-after <seconds>", "a port ACTIVE in Neutron is set DOWN/ERROR once Palisade has reported it so for this long (damps restarts; env PALISADE_OPENSTACK_ML2_DOWN_AFTER)", envDefault("PALISADE_OPENSTACK_ML2_DOWN_AFTER", "10"))
  .option("--log-level <level>", "trace, debug, info, warn, error (env PALISADE_LOG_LEVEL)", envDefault("PALISADE_LOG_LEVEL", "info"))
  .action(async (o: {
    ml2Listen?: string; ml2DownAfter: string; operatorPolicy?: string; networkLogFile?: string;
    neutronUrl: string; interval: string; resyncInterval?: string; deletionCheckInterval?: string; changeFeed: "auto" | ChangeFeed; once?: boolean; logLevel: string; strict?: boolean; allowMassDelete?: boolean; metricsListen?: string;
    osToken?: string; osAuthUrl?: string; osUsername?: string; osPassword?: string; osProjectName?: string; osUserDomainName?: string; osProjectDomainName?: string;
  }) => {
    const interval = Number(o.interval);
    if (!Number.isFinite(interval) || interval < 0.2 || interval > 86_400) throw new UsageError("--interval must be 0.2-86400 seconds");
    // Defaults follow a long --interval (an operator's old PALISADE_OPENSTACK_INTERVAL=30 stays valid).
    const resync = o.resyncInterval === undefined ? Math.max(300, interval) : Number(o.resyncInterval);
    if (!Number.isFinite(resync) || resync < interval || resync > 86_400) throw new UsageError("--resync-interval must be --interval-86400 seconds");
    const deletionCheck = o.deletionCheckInterval === undefined ? Math.min(resync, Math.max(10, interval)) : Number(o.deletionCheckInterval);
    if (!Number.isFinite(deletionCheck) || deletionCheck < interval || deletionCheck > resync) throw new UsageError("--deletion-check-interval must be between --interval and --resync-interval");
    if (!/^https?:\/\/[^\s]+$/.test(o.neutronUrl)) throw new UsageError(`--neutron-url: expected http(s)://HOST:PORT, got '${o.neutronUrl}'`);
    if (o.ml2Listen !== undefined && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(o.ml2Listen)) throw new UsageError(`--ml2-listen: expected HOST:PORT, got '${o.ml2Listen}'`);
    if (o.networkLogFile !== undefined && o.networkLogFile.trim() === "") throw new UsageError("--network-log-file needs a path, or '-' for stdout");
    const ml2DownAfter = Number(o.ml2DownAfter);
    if (!Number.isFinite(ml2DownAfter) || ml2DownAfter < 0 || ml2DownAfter > 3_600) throw new UsageError("--ml2-down-after must be 0-3600 seconds");
    let auth;
    try {
      auth = authFromEnv(process.env, {
        token: o.osToken, authUrl: o.osAuthUrl, username: o.osUsername, password: o.osPassword,
        projectName: o.osProjectName, userDomainName: o.osUserDomainName, projectDomainName: o.osProjectDomainName,
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const logger = createLogger({ name: "palisade-openstack", level: o.logLevel });
    // Refused at start when bad: there is no last good policy to keep, and
    // syncing without it would delete the operator profiles in force.
    let operatorPolicy = readOperatorPolicy(o.operatorPolicy);
    const abort = new AbortController();
    // The shutdown signal also cuts a Neutron request short: SIGTERM does not wait for a timeout.
    const neutron = createNeutronClient({ url: o.neutronUrl, auth, signal: abort.signal });
    const c = clients();
    const metrics = createAdapterMetrics();
    let lastOk = 0;
    const http = o.metricsListen
      ? await startMetricsServer({
        listen: o.metricsListen, registry: metrics.registry, logger,
        ready: async () => (lastOk ? { ok: true, detail: `last sync ${new Date(lastOk).toISOString()}` } : { ok: false, detail: "no successful sync yet" }),
      })
      : undefined;
    // Neutron's ML2 driver says what was committed: the next poll is now and
    // fetches those objects by id (pending-changes.ts: coalesced and bounded;
    // one wake-up however many notices; at most one nudged poll start per
    // 100 ms). The interval's change feed and the resync's full listing stay
    // the safety net for lost notices.
    const pending = createPendingChanges();
    let nudged = false;
    let wake = new AbortController();
    // One listener for the whole run (AbortSignal.any per pause would leave
    // one behind on the long-lived shutdown signal each time).
    abort.signal.addEventListener("abort", () => wake.abort(), { once: true });
    const nudge = (n: { changes: Parameters<typeof pending.add>[0]; overflow: boolean; unknown: boolean }) => {
      pending.add(n.changes, n.overflow);
      if (n.unknown) pending.addUnknown();
      nudged = true;
      metrics.nudges.inc();
      metrics.noticedChanges.inc(n.changes.length);
      if (n.overflow) metrics.noticeOverflows.inc();
      wake.abort();
    };
    // Port id -> its Neutron revision_number as of the last successful sync:
    // a port is reported programmed only once that revision is synced.
    let syncedRevisions = new Map<string, number>();
    // Port status after ACTIVE: a live view (status stream + the adapter's
    // endpoints) feeds the transitions the ML2 driver writes into Neutron.
    // Readiness (bind, lift a block) is not answered from it: those read
    // Palisade per request, paired with the synced revisions of that moment.
    const transitions = o.ml2Listen ? createPortTransitions({ holdMs: ml2DownAfter * 1000 }) : undefined;
    const live = transitions
      ? createLiveView({
        clients: c, logger, signal: abort.signal,
        onChange: (v, ports) => transitions.touch(v, ports),
        onLive: (up) => (up ? transitions.thaw() : transitions.freeze()),
      })
      : undefined;
    const ticker = transitions ? setInterval(() => transitions.tick(), 500) : undefined;
    ticker?.unref();
    abort.signal.addEventListener("abort", () => clearInterval(ticker), { once: true });
    const refreshLive = () => live?.refreshEndpoints().catch((e: Error) => logger.warn({ err: e.message }, "ML2 view: cannot list endpoints; retried within a minute"));
    void refreshLive();
    const relister = live ? setInterval(() => void refreshLive(), 60_000) : undefined;
    relister?.unref();
    abort.signal.addEventListener("abort", () => clearInterval(relister), { once: true });
    const ml2 = o.ml2Listen
      ? await startMl2Endpoint({
        listen: o.ml2Listen, nudge, transitions, logger, onRequest: (route) => metrics.ml2Requests.inc({ route }),
        synced: () => { const m = syncedRevisions; return (id) => m.get(id); },
        read: () => readMl2View(c),
      })
      : undefined;
    if (ml2 && !/^(127\.|\[::1\]|localhost:)/.test(o.ml2Listen!)) logger.warn({ listen: o.ml2Listen }, "--ml2-listen is not a loopback address: it has no authentication");
    // Neutron's logging API (DESIGN §11.13): the flow records of the ports
    // enabled logs select, as JSON lines. The logs are read every poll (one
    // small request); a failed read keeps the last good selection.
    const networkLog = o.networkLogFile
      ? startNetworkLogWriter({
        flows: c.flows, file: o.networkLogFile, logger: logger.child({ component: "network-log" }),
        onRecord: (result, n) => metrics.networkLogRecords.inc({ result }, n),
      })
      : undefined;
    let neutronLogs: NeutronLog[] | undefined;
    let logPorts: readonly NeutronPort[] = [];
    let logSelection: LogSelection = EMPTY_SELECTION;
    let logReadProblem = "";
    // Set when a read found the logs changed, cleared once the selection is
    // recomputed: a poll that fails after the read must not lose the change.
    let logsDirty = false;
    const readNeutronLogs = async (): Promise<void> => {
      try {
        const logs = (await neutron.listLogs()) ?? [];
        metrics.networkLogReads.inc({ result: "ok" });
        if (logReadProblem) logger.info("network log: Neutron's logs read again");
        else if (neutronLogs === undefined && logs.length === 0) logger.info("network log: no Neutron logs yet (or no `log` service plugin in Neutron)");
        logReadProblem = "";
        if (JSON.stringify(logs) !== JSON.stringify(neutronLogs)) logsDirty = true;
        neutronLogs = logs;
      } catch (e) {
        metrics.networkLogReads.inc({ result: "failed" });
        const err = e instanceof TranslateError ? e.issues.slice(0, 20).map(formatTranslateIssue).join("; ") : (e as Error).message;
        // Logged when it changes, not every poll.
        if (err !== logReadProblem) logger.error({ err }, "network log: cannot read Neutron's logs; the last good selection stays");
        logReadProblem = err;
      }
    };
    const reselect = (ports: readonly NeutronPort[] | undefined) => {
      const logsChanged = logsDirty;
      if (!networkLog || (!logsChanged && (ports === undefined || ports === logPorts))) return;
      logsDirty = false;
      if (ports) logPorts = ports;
      logSelection = selectLogs(neutronLogs ?? [], logPorts);
      networkLog.setSelection(logSelection);
      metrics.networkLogs.set(logSelection.enabled);
      if (logsChanged) logger.info({ enabled: logSelection.enabled, ports: logSelection.byPort.size, ignored: logSelection.ignored }, "network log: Neutron's logs changed");
    };
    const stop = (signal: string) => { logger.info({ signal }, "stopping"); abort.abort(); };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    // SIGHUP: re-read the operator policy at the next poll, now. A good file
    // that changed makes that poll translate and sync even if Neutron is idle.
    let reloadAsked = false;
    let policyChanged = false;
    metrics.operatorPolicyProfiles.set(operatorPolicy.profiles.length);
    metrics.operatorPolicyValid.set(1);
    process.on("SIGHUP", () => { reloadAsked = true; networkLog?.reopen(); wake.abort(); });
    const reloadOperatorPolicy = () => {
      reloadAsked = false;
      if (o.operatorPolicy === undefined || o.operatorPolicy === "") {
        logger.info("SIGHUP: no --operator-policy file to re-read");
        return;
      }
      try {
        const next = readOperatorPolicy(o.operatorPolicy);
        metrics.operatorPolicyReloads.inc({ result: "ok" });
        metrics.operatorPolicyValid.set(1);
        metrics.operatorPolicyProfiles.set(next.profiles.length);
        if (JSON.stringify(next) === JSON.stringify(operatorPolicy)) {
          logger.info({ file: o.operatorPolicy }, "operator policy re-read: unchanged");
          return;
        }
        operatorPolicy = next;
        policyChanged = true;
        logger.info({ file: o.operatorPolicy, profiles: next.profiles.map((p) => `${p.placement} ${p.profile.id}`) }, "operator policy reloaded; syncing");
      } catch (e) {
        metrics.operatorPolicyReloads.inc({ result: "failed" });
        metrics.operatorPolicyValid.set(0);
        const issues = e instanceof OperatorPolicyError ? e.issues.slice(0, 20).map(formatOperatorIssue) : undefined;
        logger.error({ file: o.operatorPolicy, err: (e as Error).message, issues }, "operator policy refused; the last good one stays in force");
      }
    };
    // After a failure the next poll is a full listing: back off up to 30 s, not just one interval.
    const backoff = createBackoff({ initialMs: 1_000, maxMs: Math.max(interval, 30) * 1000 });
    // While notices keep every poll a by-id one, the change feed still runs
    // (after that poll's by-id reads) once per deletion-check interval: the
    // safety net for a lost notice, without adding the feed's listing to
    // every noticed change's latency in a busy cloud (DESIGN §11.11).
    const watcher = createWatcher({ neutron, feed: o.changeFeed, resyncMs: resync * 1000, deletionCheckMs: deletionCheck * 1000, feedMs: Math.max(interval, deletionCheck) * 1000 });
    let lastWarnings = "";
    let loggedFeed = false;
    logger.info({ neutron: redactUrl(o.neutronUrl), interval, resyncInterval: resync, auth: auth.kind }, "watching Neutron");
    if (o.operatorPolicy) logger.info({ file: o.operatorPolicy, profiles: operatorPolicy.profiles.map((p) => `${p.placement} ${p.profile.id}`) }, "operator policy read (re-read on SIGHUP)");
    let pollStarted = 0;
    /** Waits `ms`, or less when Neutron's ML2 driver has told of a change since the last poll started. */
    const pause = async (ms: number) => {
      if (!nudged) await sleep(ms, wake.signal);
      if (nudged) await sleep(Math.max(0, pollStarted + 100 - Date.now()), abort.signal);
    };
    while (!abort.signal.aborted) {
      pollStarted = Date.now();
      nudged = false;
      if (wake.signal.aborted && !abort.signal.aborted) wake = new AbortController();
      const wait = interval * 1000;
      if (reloadAsked) reloadOperatorPolicy();
      // Taken whole: if this poll fails, the next one is a full listing, which covers them.
      const batch = pending.take();
      try {
        if (networkLog) await readNeutronLogs();
        // After the log listing: poll_reads_total counts the poll's own reads (README).
        const readsBefore = neutron.stats().reads;
        let poll;
        try {
          poll = await watcher.poll(batch);
        } finally {
          const r = neutron.stats().reads;
          for (const k of ["list", "by_id", "bindings"] as const) if (r[k] > readsBefore[k]) metrics.pollReads.inc({ read: k }, r[k] - readsBefore[k]);
        }
        metrics.polls.inc({ kind: poll.kind });
        if (!loggedFeed) {
          logger.info({ feed: poll.feed }, poll.feed === "changed-since"
            ? "change feed: changed_since (idle polls read only what changed)"
            : "change feed: revisions listing (Neutron refuses changed_since while filter_validation is on; idle polls list ids and revisions)");
          loggedFeed = true;
        }
        // Built on demand: an idle poll needs no picture.
        const input = poll.kind === "idle" && !policyChanged ? undefined : poll.input();
        reselect(poll.kind === "idle" ? undefined : input!.ports);
        if (input === undefined) {
          // Nothing changed in Neutron: nothing to translate or write.
          lastOk = Date.now();
          metrics.lastSuccess.set(Math.floor(lastOk / 1000));
          backoff.reset();
          await pause(wait);
          continue;
        }
        logger.debug({ kind: poll.kind, via: poll.via, ...poll.changed }, "Neutron changed");
        const result = translate({ ...input, operatorPolicy }, modeOf(o.strict));
        // Warnings repeat every poll while Neutron is unchanged: log them when they change.
        const w = JSON.stringify([result.warnings, result.leftOut]);
        if (w !== lastWarnings) {
          for (const i of result.leftOut) logger.warn({ leftOut: formatTranslateIssue(i) }, "cannot translate; left out (fail closed)");
          for (const x of result.warnings) logger.warn({ warning: x }, "translation warning");
        }
        lastWarnings = w;
        const r = await syncOnce(c.policy, result, { allowMassDelete: o.allowMassDelete });
        if (ml2) {
          // Swapped, never changed in place: the ML2 endpoint pairs a view
          // with the map of the moment its read started (ml2-endpoint.ts).
          syncedRevisions = new Map(input.ports.map((p) => [p.id, p.revision_number ?? 0]));
          if (r.transactions > 0) void refreshLive();
        }
        logger[r.transactions ? "info" : "debug"]({ created: r.created, updated: r.updated, deleted: r.deleted, unchanged: r.unchanged, skipped: r.skipped, revision: r.revision }, summary(r));
        metrics.heldDeletions.set(r.heldBack.length);
        metrics.syncs.inc({ result: "ok" });
        policyChanged = false;
        lastOk = Date.now();
        metrics.lastSuccess.set(Math.floor(lastOk / 1000));
        // Logged every sync while it lasts: an operator must act on it.
        if (r.heldBack.length) logger.warn({ heldBack: r.heldBack.length, owned: r.owned, endpoints: r.heldBack.slice(0, 20) }, heldText(r));
        backoff.reset();
        if (o.once) break;
      } catch (e) {
        // Nothing is written when Neutron or the translation fails: the last
        // good state stays in force.
        const err = e as Error;
        // What is held may be half-updated: read everything again next time.
        watcher.invalidate();
        metrics.syncs.inc({ result: "failed" });
        const detail = e instanceof TranslateError ? e.issues.slice(0, 20).map(formatTranslateIssue) : e instanceof AdapterError ? e.details.slice(0, 20) : undefined;
        // Stopping (SIGTERM/SIGINT cut the request short) is not a failure to retry.
        if (abort.signal.aborted) {
          logger.info({ err: err.message }, "stopping: the sync in progress was abandoned; the current state stays in force");
          break;
        }
        if (o.once) {
          logger.error({ err: err.message, detail }, "sync failed; keeping the current state");
          throw e;
        }
        logger.error({ err: err.message, detail }, "sync failed; keeping the current state and retrying");
        // After a failure the backoff holds, change notices or not.
        await sleep(backoff.next(), abort.signal);
        continue;
      }
      await pause(wait);
    }
    await ml2?.close();
    await networkLog?.close();
    c.close();
    await http?.close();
  });

/** Palisade as the ML2 endpoint answers from it: hosts, the adapter's endpoints by port, endpoint statuses. */
async function readMl2View(c: ReturnType<typeof clients>): Promise<Ml2View> {
  // A stuck controller makes the endpoint answer 503 (bind nothing, lift
  // nothing) rather than hold Neutron's binding requests for 30 s.
  const [eps, st] = await Promise.all([call(c.policy, c.policy.listEndpoints, { host: "" }, 5_000), call(c.status, c.status.getStatus, {}, 5_000)]);
  return {
    hosts: new Map(st.hosts.map((h) => [h.hostname, h])),
    endpointsByPort: endpointsByPortOf(eps.endpoints),
    statuses: new Map(st.endpoints.map((e) => [e.endpointKey, e])),
  };
}

program.command("status")
  .description("each adapter-owned endpoint's status, as a Neutron port status (ACTIVE / DOWN / ERROR)")
  .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
  .action(async (o: { output: string }) => {
    const c = clients();
    try {
      const [eps, st] = await Promise.all([call(c.policy, c.policy.listEndpoints, { host: "" }), call(c.status, c.status.getStatus, {})]);
      const owned = eps.endpoints.map(endpointFromPb).filter((e) => e.orchestrator === ORCHESTRATOR && isOwned({ kind: "Endpoint", endpoint: e }));
      const rows = portStatusRows(owned, st.hosts, st.endpoints);
      if (o.output === "json") {
        process.stdout.write(`${JSON.stringify({ ports: rows }, null, 2)}\n`);
        return;
      }
      const table = [["PORT", "STATUS", "HOST", "INTERFACE", "DETAIL"], ...rows.map((r) => [r.port_id, r.status, r.host, r.interface, r.detail])];
      process.stdout.write(formatTable(table));
    } finally {
      c.close();
    }
  });

silenceIpServerNameWarning();
withUsageExit(program);
try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof UsageError) fail(`palisade-openstack: ${e.message}`, EXIT_USAGE);
  // The reason on the first line; the full list, indented, after it.
  const die = (line: string, details: string[]): never => {
    process.stderr.write(`palisade-openstack: ${line}\n`);
    for (const d of details.slice(0, 50)) process.stderr.write(`  ${d}\n`);
    if (details.length > 50) process.stderr.write(`  … and ${details.length - 50} more\n`);
    process.exit(1);
  };
  if (e instanceof OperatorPolicyError) die(`--operator-policy ${e.source}: refused (${e.issues.length} problem(s), nothing written): ${formatOperatorIssue(e.issues[0]!)}`, e.issues.slice(1).map(formatOperatorIssue));
  if (e instanceof TranslateError) die(`cannot translate (${e.issues.length} problem(s), nothing written): ${formatTranslateIssue(e.issues[0]!)}`, e.issues.slice(1).map(formatTranslateIssue));
  if (e instanceof AdapterError) die(e.message, e.details);
  // Palisade refused what the translation produced: document and field from the status's structure.
  const refused = e instanceof RpcError ? e.validation() : undefined;
  if (refused) die(`Palisade refused ${refused.issues.length} problem(s), nothing written: ${formatIssue(refused.issues[0]!)}`, refused.issues.slice(1).map(formatIssue));
  if (e instanceof NeutronApiError || e instanceof RpcError) fail(`palisade-openstack: ${e.message}`);
  fail(`palisade-openstack: ${(e as Error).message}`);
}
