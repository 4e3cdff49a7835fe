// palisade-driver, as a library. Thin by design: it holds the controller's
// desired state, diffs it against the kernel, applies minimal batches, and
// reports. It contains no policy semantics.
//
// Life cycle:
//   start      read the kernel; program only the base chains and fail-closed
//              entry chains (adopting whatever a previous driver left, which
//              keeps enforcing); connect.
//   snapshot   accumulate until in_sync; then one apply that also removes
//              leftovers; from then on, every batch is applied (batches that
//              arrive during an apply are merged into the next one).
//   loss       keep enforcing the last state; reconnect; the new snapshot
//              is diffed against the kernel, so nothing is flushed.
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { chainKey, type ChainDef } from "../contract/host-update.js";
import { createBackoff } from "../util/backoff.js";
import { updateFromPb } from "../contract/sync-wire.js";
import { InterfaceState, type SyncResponse } from "../contract/sync.js";
import type { IpVersion } from "../model/index.js";
import { detectBackend, type Backend } from "./backend.js";
import { failClosedEntryChains, renderBaseChains } from "./base-chains.js";
import type { CommandRunner } from "./command-runner.js";
import { createRulesetMonitor, defaultMonitorCommand, type RulesetMonitor } from "./ruleset-monitor.js";
import { createDataplane, type Dataplane } from "./dataplane.js";
import { DesiredState, type DesiredSet } from "./desired-state.js";
import { interfaceStatus, sysfsReader, type InterfaceReader, type InterfaceStatus } from "./interface-monitor.js";
import type { PlanInput } from "./plan.js";
import { startSyncClient, type SyncClient } from "./sync-client.js";
import type { DriverMetrics } from "./metrics.js";
import { startFlowReports, type FlowReportsConfig } from "./flow-driver.js";
import type { FlowReporter } from "./flow-reporter.js";

export const DRIVER_VERSION = "0.1.0";

export interface DriverOptions {
  controllers: string[];
  hostname: string;
  /** How to reach the controllers (mTLS with this host's certificate); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  interfacePrefixes?: string[];
  runner: CommandRunner;
  logger: Logger;
  backend?: Backend | "auto";
  families?: IpVersion[];
  /** Periodic read-back for drift; default 30 s. */
  driftCheckMs?: number;
  /** Read-back shortly after each write (catches a racing writer); default 2 s. */
  postWriteCheckMs?: number;
  interfacePollMs?: number;
  readInterface?: InterfaceReader;
  metrics?: DriverMetrics;
  /**
   * Tamper watch (nft backend only): `nft monitor` triggers a drift check
   * when another process edits our chains or hooks. Default on, in the
   * runner's namespace (its execPrefix); false turns it off.
   */
  rulesetMonitor?: false | { command?: readonly string[]; debounceMs?: number };
  /**
   * Flow reports (DESIGN §6.12): mode, rate, log file, metrics. Absent: the
   * rate-limit chains are programmed with the defaults, but no reader runs.
   */
  flows?: FlowReportsConfig;
}

export interface DriverCounters {
  applies: number;
  applyFailures: number;
  driftRepairs: number;
}

export interface Driver {
  readonly inSync: boolean;
  readonly counters: DriverCounters;
  readonly appliedRevision: number;
  readonly backend: Backend;
  readonly dataplane: Dataplane;
  /** Resolves when the first complete state has been applied. */
  readonly firstSync: Promise<void>;
  /** The flow reporter (DESIGN §6.12), once started. */
  readonly flows: FlowReporter | undefined;
  /** Asks for a read-back and repair soon (serialised with applies); a no-op before the first complete state. */
  checkDrift(): void;
  stop(): Promise<void>;
}

export async function startDriver(o: DriverOptions): Promise<Driver> {
  const logger = o.logger;
  const prefixes = o.interfacePrefixes ?? ["tap"];
  const families = o.families ?? [4, 6];
  // Every process the driver runs, by PID: the tamper watch must recognise
  // the nftables transactions of our own restores and ignore them. A PID is
  // remembered a while after its process ended (the monitor's report of a
  // transaction can trail the process's exit), then forgotten before Linux
  // could plausibly reuse it.
  const ownPids = new Map<number, number>();
  const runner: CommandRunner = {
    execPrefix: o.runner.execPrefix,
    run(cmd, args, input, ro) {
      let pid: number | undefined;
      return o.runner.run(cmd, args, input, {
        onSpawn: (p) => { pid = p; ownPids.set(p, Infinity); ro?.onSpawn?.(p); },
      }).finally(() => {
        if (pid !== undefined) ownPids.set(pid, Date.now() + 10_000);
        // Pruned here too, not only when the monitor asks: without a monitor
        // (legacy, no nft) nothing else would, and the map would only grow.
        forgetOldPids();
      });
    },
  };
  const forgetOldPids = () => {
    const now = Date.now();
    for (const [p, until] of ownPids) if (until < now) ownPids.delete(p);
  };
  const isOwnPid = (pid: number) => {
    forgetOldPids();
    return ownPids.has(pid);
  };
  const backend = !o.backend || o.backend === "auto" ? await detectBackend(runner) : o.backend;
  const dataplane = createDataplane({ runner, backend, families, logger: logger.child({ component: "dataplane" }) });
  const base = new Map<string, ChainDef>();
  for (const f of families) for (const c of renderBaseChains(prefixes, f)) base.set(chainKey(f, c.name), c);
  // Flow reports: the driver's rate-limit chains are base chains too (they
  // exist before the controller's chains that jump to them).
  const flowSetup = startFlowReports(o.flows, { families, backend, hostname: o.hostname, runner: o.runner, logger });
  for (const c of flowSetup.chains) base.set(chainKey(c.family, c.name), c);

  let desired: DesiredState | undefined;
  let pending: DesiredState | undefined;
  let pendingRevision = 0;
  let targetRevision = 0;
  let appliedRevision = 0;
  let synced = false;
  let lastApplyFailed = false;
  let reportPending = false;
  // A controller that infers progress (the snapshot says so) needs answers
  // only for revisions that brought updates: `contentPending` marks one.
  let acksForContentOnly = false;
  let contentPending = false;
  let driftRequested = false;
  let applying = false;
  let dirty = false;
  let stopped = false;
  let resolveFirst!: () => void;
  const firstSync = new Promise<void>((r) => (resolveFirst = r));
  const retry = createBackoff({ initialMs: 200, maxMs: 10_000 });
  let retryTimer: NodeJS.Timeout | undefined;
  const endpointStatus = new Map<string, InterfaceStatus>();
  const counters: DriverCounters = { applies: 0, applyFailures: 0, driftRepairs: 0 };
  let postWriteTimer: NodeJS.Timeout | undefined;
  let client: SyncClient | undefined;

  // What a previous driver left: its entry chains keep enforcing the last
  // known policy until our first in-sync (a restart opens no window and
  // does not interrupt allowed traffic).
  const startKernel = await dataplane.readKernel();

  function planInput(): PlanInput {
    const chains = new Map(base);
    if (desired) {
      for (const [k, c] of desired.chains) chains.set(k, c);
    } else {
      // Before the first in-sync, entry chains that do not exist yet are
      // fail-closed placeholders; existing ones are left untouched (the plan
      // does not remove unknown chains before the first in-sync).
      for (const f of families) {
        for (const c of failClosedEntryChains(f)) {
          // Adopt only a chain a previous driver filled: a flushed (empty) or
          // tampered leftover would let pal-FORWARD fall through to ACCEPT.
          const left = startKernel.families[f].chains.get(c.name);
          const adoptable = left !== undefined && left.hashes.length > 0 && left.hashes.every((h) => h !== "");
          if (!adoptable) chains.set(chainKey(f, c.name), c);
        }
      }
    }
    // The sets are copied: deltas arriving while an apply runs mutate the
    // desired sets, and the dataplane must remember what it actually wrote.
    const sets = new Map<string, DesiredSet>();
    for (const [n, set] of desired?.sets ?? []) sets.set(n, { family: set.family, members: new Set(set.members) });
    return { chains, sets, families, removeUnwanted: desired !== undefined };
  }

  async function applyLoop(): Promise<void> {
    if (applying || stopped) return;
    applying = true;
    try {
      while (dirty && !stopped) {
        dirty = false;
        const revision = targetRevision;
        // Content that arrives during this apply belongs to the next one.
        const content = contentPending;
        contentPending = false;
        // What this apply answers for is fixed with its input. A snapshot
        // that arrives while the pre-sync apply (placeholders only) runs is
        // answered by the apply that carries it out: answering it from this
        // one would report the wrong revision and use up the snapshot's
        // answer, leaving the host "in sync at 0" on the controller.
        const planned = desired;
        const report = reportPending;
        reportPending = false;
        const input = planInput();
        try {
          // Drift checks run here, serialised with applies: a read-back racing
          // an apply could otherwise replace the dataplane's view with a stale one.
          // The check compares the kernel with what we last programmed; a
          // desired change pending right now is not drift, and the apply
          // below carries it out together with any repair (one read-back).
          if (driftRequested && desired) {
            driftRequested = false;
            if (await dataplane.detectDrift()) {
              counters.driftRepairs++;
              o.metrics?.driftRepairs.inc();
            }
          }
          const r = await dataplane.apply(input);
          retry.reset();
          counters.applies++;
          if (r.bytesWritten > 0) schedulePostWriteCheck();
          const m = o.metrics;
          if (m) {
            m.applyDuration.observe({ stage: "total" }, r.durationMs / 1000);
            for (const [stage, ms] of Object.entries(r.stages)) m.applyDuration.observe({ stage }, ms / 1000);
            for (const f of families) {
              let n = 0;
              for (const c of input.chains.values()) if (c.family === f) n += c.rules.length;
              m.rulesProgrammed.set({ family: `ipv${f}` }, n);
            }
            m.ipsetsProgrammed.set(input.sets.size);
          }
          if (planned) {
            // A new snapshot (e.g. from another replica after a failover) is always
            // acknowledged, even when it changes nothing in the kernel.
            const moved = acksForContentOnly ? content : revision !== appliedRevision;
            const news = report || moved || r.bytesWritten > 0 || lastApplyFailed || !synced;
            appliedRevision = revision;
            synced = true;
            lastApplyFailed = false;
            o.metrics?.appliedRevision.set(revision);
            o.metrics?.inSync.set(1);
            // Quiet no-op applies (drift checks that found nothing) are not reported.
            if (news) client?.send({ message: { $case: "applied", value: { revision, ok: true, error: "", durationMs: r.durationMs, chainsWritten: r.chainsWritten, ipsetLines: r.ipsetLines } } });
            if (r.chainsWritten || r.ipsetLines || r.chainsRemoved) logger.info({ revision, ms: Math.round(r.durationMs), chains: r.chainsWritten, removed: r.chainsRemoved, ipsetLines: r.ipsetLines }, "applied");
            resolveFirst();
          }
        } catch (err) {
          const message = (err as Error).message;
          counters.applyFailures++;
          contentPending ||= content;
          reportPending ||= report;
          lastApplyFailed = true;
          o.metrics?.applyFailures.inc();
          logger.error({ revision, err: message }, "apply failed; will retry (traffic stays as last programmed)");
          if (planned) client?.send({ message: { $case: "applied", value: { revision, ok: false, error: message, durationMs: 0, chainsWritten: 0, ipsetLines: 0 } } });
          dirty = true;
          clearTimeout(retryTimer);
          retryTimer = setTimeout(() => void applyLoop(), retry.next());
          return;
        }
      }
    } finally {
      applying = false;
    }
  }

  function schedule(): void {
    dirty = true;
    void applyLoop();
  }

  function onBatch(batch: SyncResponse): void {
    try {
      const updates = batch.updates.map(updateFromPb).filter((u) => u !== undefined);
      if (batch.snapshotStart) pending = new DesiredState();
      if (pending) {
        pending.apply(updates);
        pendingRevision = batch.revision;
        if (batch.inSync) {
          desired = pending;
          pending = undefined;
          targetRevision = pendingRevision;
          reportPending = true;
          acksForContentOnly = batch.acksForContentOnly;
          logger.info({ revision: targetRevision, chains: desired.chains.size, sets: desired.sets.size, endpoints: desired.endpoints.size }, "in sync with controller");
          schedule();
          void checkInterfaces(true);
        }
        return;
      }
      if (!desired) return; // deltas before any snapshot: ignore
      if (updates.length === 0 && batch.revision <= targetRevision && !batch.partial) return; // heartbeat
      desired.apply(updates);
      if (updates.length > 0) contentPending = true;
      // Apply a revision only once all of its parts are here.
      if (batch.partial) return;
      targetRevision = Math.max(targetRevision, batch.revision);
      schedule();
      if (updates.some((u) => u.type === "endpoint-update" || u.type === "endpoint-remove")) void checkInterfaces(false);
    } catch (err) {
      // A batch we cannot trust: drop the stream and start over from a snapshot.
      logger.error({ err: (err as Error).message }, "refusing batch from controller; reconnecting for a fresh snapshot");
      pending = undefined;
      restartClient();
    }
  }

  const STATE = { up: InterfaceState.INTERFACE_STATE_UP, down: InterfaceState.INTERFACE_STATE_DOWN, error: InterfaceState.INTERFACE_STATE_ERROR };
  async function checkInterfaces(all: boolean): Promise<void> {
    if (!desired) return;
    for (const [key, name] of desired.endpoints) {
      const s = await interfaceStatus(name, prefixes, o.readInterface ?? sysfsReader);
      const prev = endpointStatus.get(key);
      if (all || !prev || prev.state !== s.state || prev.detail !== s.detail) {
        endpointStatus.set(key, s);
        client?.send({ message: { $case: "endpointStatus", value: { endpointKey: key, state: STATE[s.state], detail: s.detail } } });
      }
    }
    for (const key of [...endpointStatus.keys()]) if (!desired.endpoints.has(key)) endpointStatus.delete(key);
  }

  function connect(): SyncClient {
    return startSyncClient({
      controllers: o.controllers,
      credentials: o.credentials,
      logger,
      hello: { hostname: o.hostname, driverVersion: DRIVER_VERSION, ipv6: families.includes(6), iptablesBackend: backend },
      onBatch,
      onConnected: (address) => logger.info({ controller: address }, "connected to controller"),
      onDisconnected: (reason) => {
        pending = undefined;
        logger.warn({ reason }, "disconnected from controller; enforcing last state");
      },
    });
  }

  function restartClient(): void {
    client?.stop();
    if (!stopped) client = connect();
  }

  // Fail closed before anything else: base chains + entry placeholders.
  schedule();
  client = connect();
  const flows = flowSetup.start({
    endpoints: () => desired?.endpoints,
    send: (report) => {
      if (!client?.connected) return false;
      client.send({ message: { $case: "flowReport", value: report } });
      return true;
    },
  });

  /** Asks the apply loop to read the kernel back and repair any difference. */
  function checkDrift(): void {
    if (!desired || stopped) return;
    driftRequested = true;
    schedule();
  }

  function schedulePostWriteCheck(): void {
    clearTimeout(postWriteTimer);
    postWriteTimer = setTimeout(checkDrift, o.postWriteCheckMs ?? 2_000);
  }

  const driftTimer = setInterval(checkDrift, o.driftCheckMs ?? 30_000);
  // Only iptables-nft edits are nftables events; the legacy backend keeps
  // the periodic read-back alone.
  let monitor: RulesetMonitor | undefined;
  if (backend === "nft" && o.rulesetMonitor !== false) {
    o.metrics?.rulesetMonitorUp.set(0);
    monitor = createRulesetMonitor({
      logger: logger.child({ component: "ruleset-monitor" }),
      command: o.rulesetMonitor?.command ?? [...(runner.execPrefix ?? []), ...defaultMonitorCommand()],
      debounceMs: o.rulesetMonitor?.debounceMs,
      isOwnPid,
      onChange: checkDrift,
      onRunning: (up) => o.metrics?.rulesetMonitorUp.set(up ? 1 : 0),
    });
  }
  const ifTimer = setInterval(() => void checkInterfaces(false), o.interfacePollMs ?? 2_000);

  return {
    get inSync() { return synced; },
    counters,
    get appliedRevision() { return appliedRevision; },
    backend,
    dataplane,
    firstSync,
    flows,
    checkDrift,
    async stop() {
      stopped = true;
      void flows?.stop();
      clearInterval(driftTimer);
      clearInterval(ifTimer);
      clearTimeout(retryTimer);
      clearTimeout(postWriteTimer);
      client?.stop();
      await monitor?.stop();
      // Rules stay in place: a stopped driver keeps enforcing the last state.
      // Let an in-flight restore finish (each table's restore is atomic), but
      // not for ever.
      const deadline = Date.now() + 3_000;
      while (applying && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
  };
}
