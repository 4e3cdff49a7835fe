// palisade-driver, as a library. Thin by design: it holds the controller's
// desired state, applies what changed, checks the kernel back, and
// reports. It contains no policy semantics.
//
// Life cycle:
//   start      read the kernel; program only the base chains and fail-closed
//              entry chains (adopting whatever a previous driver left, which
//              keeps enforcing); connect.
//   snapshot   accumulate until in_sync; then one apply that also removes
//              leftovers; from then on, every batch is applied (batches that
//              arrive during an apply are merged into the next one), each
//              planned from what changed since the last successful apply.
//   loss       keep enforcing the last state; reconnect; the new snapshot
//              is diffed against what was programmed, so nothing is flushed.
//
// This file only wires the parts together. Each folder is one concern
// (DESIGN §1.3): sync/ (the controller's stream and its desired state),
// plan/ (pure: what the kernel should get), kernel/ (reading and running
// the kernel's tools), apply/ (the serial apply loop and its executor),
// monitors/ (interfaces, tampering), flows/ (flow reports).
import { DRIVER_FEATURES } from "../contract/driver-features.js";
import { startFlowReports } from "./flows/flow-driver.js";
import type { FlowReporter } from "./flows/flow-reporter.js";
import { detectBackend, type Backend } from "./kernel/backend.js";
import { createApplyLoop } from "./apply/apply-loop.js";
import { createApplyStats, type DriverCounters } from "./apply/apply-stats.js";
import { createDataplane, type Dataplane } from "./apply/dataplane.js";
import { normalizeDriverOptions, type DriverOptions } from "./driver-options.js";
import { createInterfaceReporter } from "./monitors/interface-reporter.js";
import { bridgeFilterProblem, readBridgedPorts, readBridgeTopology } from "./monitors/bridge-check.js";
import { BRIDGE_PORT_UNPOLICED } from "./monitors/interface-monitor.js";
import { BridgeLayer } from "./plan/bridge-twins.js";
import { readBridgeZones } from "./monitors/bridge-zones.js";
import { renderZoneChains, type BridgeZone } from "./plan/zone-chains.js";
import type { ChainDef } from "../contract/host-update.js";
import { createOwnProcesses } from "./kernel/own-processes.js";
import { buildPlanInput } from "./plan/plan-input.js";
import { RevocationState } from "./apply/revocation-state.js";
import { createEndedCounter } from "./kernel/ended-connections.js";
import { iptablesCommands } from "./kernel/backend.js";
import { createRulesetMonitor, defaultMonitorCommand, type RulesetMonitor } from "./monitors/ruleset-monitor.js";
import { startSyncClient, type SyncClient } from "./sync/sync-client.js";
import { createSyncState, type ApplyTicket } from "./sync/sync-state.js";

export const DRIVER_VERSION = "0.1.0";

/** How often the ended-connections counter is read (one `iptables -L pal-end` per family). */
const ENDED_READ_MS = 10_000;

export type { DriverOptions } from "./driver-options.js";
export type { DriverCounters } from "./apply/apply-stats.js";

export interface Driver {
  readonly inSync: boolean;
  readonly counters: DriverCounters;
  readonly appliedRevision: number;
  readonly backend: Backend;
  readonly dataplane: Dataplane;
  /** Resolves when the first complete state has been applied. */
  readonly firstSync: Promise<void>;
  /**
   * Why this host's workload traffic is not all policed (bridged ports whose
   * frames bypass iptables, DESIGN §9.3), or undefined. While set, every
   * Applied the driver sends says ok=false with it as the error, so the
   * host's status carries it and never counts as healthy.
   */
  readonly hostProblem: string | undefined;
  /** The flow reporter (DESIGN §6.12), once started. */
  readonly flows: FlowReporter | undefined;
  /** Asks for a read-back and repair soon (serialised with applies); a no-op before the first complete state. */
  checkDrift(): void;
  stop(): Promise<void>;
}

export async function startDriver(options: DriverOptions): Promise<Driver> {
  const o = normalizeDriverOptions(options);
  const { logger, families } = o;
  const own = createOwnProcesses(o.runner);
  const runner = own.runner;
  const backend = o.backend === "auto" ? await detectBackend(runner) : o.backend;
  const dataplane = createDataplane({
    runner, backend, families, logger: logger.child({ component: "dataplane" }),
    ipsetSession: o.ipsetSession,
    sessionEvents: {
      started: (pid) => { stats.ipsetSessionStarted(); logger.debug({ pid }, "ipset session started"); },
      failed: (reason) => stats.ipsetSessionFailed(reason),
      disabled: (reason) => stats.ipsetSessionDisabled(reason),
    },
  });
  // Flow reports: the driver's rate-limit chains are base chains too (they
  // exist before the controller's chains that jump to them).
  const flowSetup = startFlowReports(o.flows, { families, backend, hostname: o.hostname, runner: o.runner, logger });
  // Which workload taps are ports of which bridge: read once per poll (the
  // host check's), and all of the bridge logic below follows from it.
  let bridged = await readBridgedPorts(o.interfacePrefixes, o.readHost);
  // Conntrack zones per bridge (DESIGN §6.13): read before the first apply,
  // so the zone chain is in place from the start; re-read with the host check.
  let zones = await readBridgeZones(bridged, o.readBridges);
  const ownChains = (z: readonly BridgeZone[]): ChainDef[] => [...flowSetup.chains, ...families.flatMap((f) => renderZoneChains(z, f))];
  // The driver's own chains and the host-local translation for bridged
  // ports (twins, per-port sets and guard, DESIGN §6.3), following the
  // topology polled below.
  // Revoked connections end (DESIGN §6.14): epochs, departed addresses and
  // conntrack deletions (apply/revocation-state.ts).
  const revocation = o.endRevokedConnections
    ? new RevocationState({
      families, prefixes: o.interfacePrefixes, runner, logger: logger.child({ component: "revocation" }),
      stats: { epochAdvanced: (f) => stats.epochAdvanced(f), connectionsDeleted: (n) => stats.connectionsDeleted(n), connectionsDeleteFailed: () => stats.connectionsDeleteFailed() },
      zoneOf: (iface) => zoneOfTap.get(iface),
      onApplyDue: () => loop.schedule(),
    })
    : undefined;
  /** Tap -> its bridge's zone, as last seen (a tap is often gone by the time its endpoint is). */
  const zoneOfTap = new Map<string, number>();
  const bridges = new BridgeLayer({ prefixes: o.interfacePrefixes, families, extraChains: ownChains(zones.zones), epochs: revocation?.epochs });
  revocation?.attach(bridges);
  let physdev = false;
  const stats = createApplyStats(families, o.metrics);
  let stopped = false;
  let client: SyncClient | undefined;
  let resolveFirst!: () => void;
  const firstSync = new Promise<void>((r) => (resolveFirst = r));

  // What a previous driver left: its entry chains keep enforcing the last
  // known policy until our first in-sync (a restart opens no window and
  // does not interrupt allowed traffic).
  const startKernel = await dataplane.readKernel();

  // The host check runs before the first report, so a host whose bridged
  // ports bypass iptables never reports a successful apply (DESIGN §9.3).
  const checkHost = async () => {
    const problems = [await bridgeFilterProblem(bridged, families, o.readHost), zones.problem].filter((p) => p !== undefined);
    return problems.length ? problems.join("; ") : undefined;
  };
  /** Re-reads the zoned bridges; whether the zone chain changed (the next apply writes it). */
  function rememberZones(): void {
    const byBridge = new Map(zones.zones.map((z) => [z.bridge, z.zone]));
    for (const [tap, br] of bridged) {
      const z = byBridge.get(br);
      if (z === undefined) continue;
      zoneOfTap.delete(tap);
      zoneOfTap.set(tap, z);
    }
    // Bounded: the oldest taps are forgotten first (their addresses are then deleted in every zone).
    for (const tap of zoneOfTap.keys()) { if (zoneOfTap.size <= 65_536) break; zoneOfTap.delete(tap); }
  }
  rememberZones();
  async function recheckZones(): Promise<boolean> {
    zones = await readBridgeZones(bridged, o.readBridges);
    rememberZones();
    if (!bridges.setExtraChains(ownChains(zones.zones))) return false;
    logger.info({ zones: zones.zones }, "conntrack zones per bridge changed");
    return true;
  }
  let hostProblem = await checkHost();
  o.metrics?.hostCheckFailing.set(hostProblem ? 1 : 0);
  if (hostProblem) logger.error({ problem: hostProblem }, "host check failed: workload traffic bypasses Palisade");
  const appliedMessage = (revision: number, r: { durationMs: number; chainsWritten: number; ipsetLines: number }, applyError?: string) => ({
    message: {
      $case: "applied" as const,
      value: { revision, ok: !applyError && !hostProblem, error: applyError ?? hostProblem ?? "", durationMs: r.durationMs, chainsWritten: r.chainsWritten, ipsetLines: r.ipsetLines },
    },
  });
  async function refreshTopology(): Promise<boolean> {
    const t = await readBridgeTopology(bridged, o.readHost);
    physdev = t.physdev;
    return bridges.setTopology(t);
  }
  await refreshTopology();

  let hostChecking = false;
  async function recheckHost(): Promise<void> {
    if (hostChecking || stopped) return;
    hostChecking = true;
    try {
      bridged = await readBridgedPorts(o.interfacePrefixes, o.readHost);
      // A tap joining or leaving a bridge, or br_netfilter appearing: the
      // zones, twins, per-port sets and guard follow, in one apply.
      const zonesChanged = await recheckZones();
      if ((await refreshTopology()) || zonesChanged) loop.schedule();
      const p = await checkHost();
      if (p === hostProblem) return;
      hostProblem = p;
      o.metrics?.hostCheckFailing.set(p ? 1 : 0);
      if (p) logger.error({ problem: p }, "host check failed: workload traffic bypasses Palisade");
      else logger.info("host check passes again");
      // The controller learns of it at once, for the revision already applied
      // (ok again clears the host's last error).
      if (sync.inSync) client?.send(appliedMessage(sync.appliedRevision, { durationMs: 0, chainsWritten: 0, ipsetLines: 0 }));
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "host check could not run");
    } finally {
      hostChecking = false;
    }
  }

  const sync = createSyncState({
    logger,
    onWork: () => loop.schedule(),
    onEndpoints: (all) => {
      void interfaces.check(all);
      void recheckHost();
    },
    onRefused: () => restartClient(),
  });

  const loop = createApplyLoop<ApplyTicket>({
    dataplane: {
      detectDrift: () => dataplane.detectDrift(),
      async applyFrom(take) {
        const r = await dataplane.applyFrom(take);
        if (!revocation?.pending()) return r;
        const ms = await revocation.afterApply();
        return { ...r, durationMs: r.durationMs + ms, stages: { ...r.stages, conntrack: ms } };
      },
    },
    take() {
      const ticket = sync.takeTicket();
      const d = ticket.planned;
      const v = bridges.take(d);
      // Whether this apply may revoke (DESIGN §6.14): then the epochs advance in its own restore.
      const changes = d && revocation ? revocation.take({ chains: d.chains, sets: v.sets, endpoints: d.endpoints }, v.changes, ticket.revision) : v.changes;
      const desired = d && { chains: d.chains, sets: v.sets };
      return { ticket, source: { input: buildPlanInput({ base: bridges.baseChains(), families, desired, startKernel, driverSets: v.sets }), changes } };
    },
    onApplied(r, ticket) {
      stats.applied(r, dataplane.programmed());
      if (!ticket.planned) return;
      const news = sync.succeeded(ticket, r.bytesWritten > 0);
      stats.inSync(ticket.revision);
      // Quiet no-op applies (drift checks that found nothing) are not reported.
      if (news) client?.send(appliedMessage(ticket.revision, r));
      if (r.chainsWritten || r.ipsetLines || r.chainsRemoved) logger.info({ revision: ticket.revision, ms: Math.round(r.durationMs), chains: r.chainsWritten, removed: r.chainsRemoved, ipsetLines: r.ipsetLines }, "applied");
      resolveFirst();
    },
    onFailed(err, ticket) {
      stats.failed();
      const revision = sync.failed(ticket);
      logger.error({ revision: ticket?.revision, err: err.message }, "apply failed; will retry (traffic stays as last programmed)");
      if (revision !== undefined) client?.send(appliedMessage(revision, { durationMs: 0, chainsWritten: 0, ipsetLines: 0 }, err.message));
    },
    onDriftRepaired: () => stats.driftRepaired(),
    // Before the first in-sync too: the hooks, base chains and fail-closed
    // placeholders must hold while the controller is away (DESIGN §6.8, §6.9).
    canCheckDrift: () => true,
    driftCheckMs: o.driftCheckMs,
    postWriteCheckMs: o.postWriteCheckMs,
  });

  const interfaces = createInterfaceReporter({
    prefixes: o.interfacePrefixes,
    read: o.readInterface,
    bridgeProblem: async (name) => {
      if (!(await o.readHost.isBridgePort(name))) return undefined;
      return physdev ? bridges.contestedPorts().get(name) : BRIDGE_PORT_UNPOLICED;
    },
    endpoints: () => sync.desired?.endpoints,
    send: (req) => client?.send(req),
    pollMs: o.interfacePollMs,
  });
  const hostTimer = setInterval(() => void recheckHost(), o.interfacePollMs);

  // Ended connections, counted from the kernel's own counter (exact), read
  // here rather than by the flow reporter so that it counts on hosts
  // without a flow reader. The first read, before any apply, is the baseline.
  const ended = o.endRevokedConnections
    ? createEndedCounter({
      runner, families, onEnded: (f, n) => stats.connectionsEnded(f, n),
      iptables: { 4: iptablesCommands(backend, 4).save.replace(/-save$/, ""), 6: iptablesCommands(backend, 6).save.replace(/-save$/, "") },
    })
    : undefined;
  await ended?.read();
  const endedTimer = ended && setInterval(() => void ended.read(), ENDED_READ_MS);

  function connect(): SyncClient {
    return startSyncClient({
      controllers: o.controllers,
      credentials: o.credentials,
      logger,
      hello: { hostname: o.hostname, driverVersion: DRIVER_VERSION, ipv6: families.includes(6), iptablesBackend: backend, features: [...DRIVER_FEATURES] },
      onBatch: (b) => sync.onBatch(b),
      onConnected: (address) => logger.info({ controller: address }, "connected to controller"),
      onDisconnected: (reason) => {
        sync.onDisconnected();
        logger.warn({ reason }, "disconnected from controller; enforcing last state");
      },
    });
  }

  function restartClient(): void {
    client?.stop();
    if (!stopped) client = connect();
  }

  // Fail closed before anything else: base chains + entry placeholders.
  loop.schedule();
  client = connect();
  const flows = flowSetup.start({
    endpoints: () => sync.desired?.endpoints,
    send: (report) => {
      if (!client?.connected) return false;
      client.send({ message: { $case: "flowReport", value: report } });
      return true;
    },
    revisionOfEpoch: (f, epoch) => revocation?.revisionOfEpoch(f, epoch),
  });

  // Only iptables-nft edits are nftables events; the legacy backend keeps
  // the periodic read-back alone.
  let monitor: RulesetMonitor | undefined;
  if (backend === "nft" && o.rulesetMonitor !== false) {
    o.metrics?.rulesetMonitorUp.set(0);
    monitor = createRulesetMonitor({
      logger: logger.child({ component: "ruleset-monitor" }),
      command: o.rulesetMonitor.command ?? [...(runner.execPrefix ?? []), ...defaultMonitorCommand()],
      debounceMs: o.rulesetMonitor.debounceMs,
      isOwnPid: own.isOwnPid,
      onChange: () => loop.checkDrift(),
      onRunning: (up) => o.metrics?.rulesetMonitorUp.set(up ? 1 : 0),
    });
  }

  return {
    get inSync() { return sync.inSync; },
    counters: stats.counters,
    get appliedRevision() { return sync.appliedRevision; },
    get hostProblem() { return hostProblem; },
    backend,
    dataplane,
    firstSync,
    flows,
    checkDrift: () => loop.checkDrift(),
    async stop() {
      stopped = true;
      // No further applies or checks from here; one in flight is waited for below.
      const applies = loop.stop();
      void flows?.stop();
      interfaces.stop();
      clearInterval(hostTimer);
      revocation?.stop();
      clearInterval(endedTimer);
      client?.stop();
      await monitor?.stop();
      // Rules stay in place: a stopped driver keeps enforcing the last state.
      // Let an in-flight restore finish (each table's restore is atomic), but
      // not for ever.
      await applies;
      // The ipset session is the driver's own process: it ends with it.
      await dataplane.close();
    },
  };
}
