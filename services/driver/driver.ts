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
import { buildPlanInput, type Epochs } from "./plan/plan-input.js";
import { GONE_CAP, GONE_WINDOW_MS, initialEpoch, nextEpoch, RevocationWatch, type GoneAddress } from "./plan/revocation.js";
import type { IpVersion } from "../model/index.js";
import { deleteConntrack } from "./kernel/conntrack.js";
import { createEndedCounter } from "./kernel/ended-connections.js";
import { iptablesCommands } from "./kernel/backend.js";
import type { ApplySource } from "./apply/dataplane.js";
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
  const dataplane = createDataplane({ runner, backend, families, logger: logger.child({ component: "dataplane" }) });
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
  // Revoked connections end (DESIGN §6.14): each family's policy epoch, from
  // a random start (a restarted driver judges every connection once more,
  // never a connection as if judged by it), advanced by applies that may revoke.
  const epochs: Epochs = {};
  if (o.endRevokedConnections) for (const f of families) epochs[f] = initialEpoch();
  const revocation = o.endRevokedConnections ? new RevocationWatch(families) : undefined;
  /**
   * Per family, epoch -> the revision whose apply advanced to it: an ended
   * connection's report carries the epoch it was denied in, and `flows`
   * shows the revision (issue #21 item 7). Bounded: the newest epochs only
   * (an older one's reports are long gone).
   */
  const epochRevisions: Record<IpVersion, Map<number, number>> = { 4: new Map(), 6: new Map() };
  const EPOCH_REVISIONS_KEPT = 1_024;
  /**
   * Addresses whose connections are still to be deleted (after the apply
   * that removed them), by "family net iface"; kept until a deletion
   * succeeds, bounded (the oldest are dropped, with an error, past the cap).
   */
  const goneAddresses = new Map<string, GoneAddress>();
  const QUEUE_CAP = 100_000;
  /** Tap -> its bridge's zone, as last seen (a tap is often gone by the time its endpoint is). */
  const zoneOfTap = new Map<string, number>();
  const bridges = new BridgeLayer({ prefixes: o.interfacePrefixes, families, extraChains: ownChains(zones.zones), epochs });
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

  /**
   * Whether this apply may revoke (DESIGN §6.14): if so, the families'
   * epochs advance in its own iptables-restore (their base chains join its
   * changes), and addresses that left an endpoint are queued for deletion.
   */
  function revoke(revision: number, d: NonNullable<ApplyTicket["planned"]>, sets: ApplySource["input"]["sets"], changes: ApplySource["changes"]): ApplySource["changes"] {
    if (!revocation) return changes;
    const verdict = revocation.observe({ chains: d.chains, sets, endpoints: d.endpoints }, changes);
    for (const g of verdict.gone) {
      const k = `${g.family} ${g.net} ${g.iface}`;
      goneAddresses.delete(k);
      goneAddresses.set(k, g);
    }
    if (goneAddresses.size > QUEUE_CAP) {
      let n = 0;
      for (const k of goneAddresses.keys()) { if (goneAddresses.size <= QUEUE_CAP) break; goneAddresses.delete(k); n++; }
      logger.error({ dropped: n }, "too many addresses waiting for their connections to be deleted; the oldest are given up");
    }
    const windowChanged = recentlyGone(verdict.gone);
    if (!verdict.bump.length && !windowChanged) return changes;
    for (const f of verdict.bump) {
      epochs[f] = nextEpoch(epochs[f]!);
      const m = epochRevisions[f];
      m.delete(epochs[f]!);
      m.set(epochs[f]!, revision);
      if (m.size > EPOCH_REVISIONS_KEPT) m.delete(m.keys().next().value!);
    }
    const keys = bridges.setRevocation(epochs, goneNets(), true);
    if (verdict.bump.length) stats.epochAdvanced(verdict.bump);
    return changes && { ...changes, chains: new Set([...changes.chains, ...keys]) };
  }

  /**
   * Departed addresses whose mid-stream TCP pick-ups are refused
   * (pal-ct-gone), per family: "net" -> when that ends. Adds `gone`, drops
   * what expired and what exceeds the cap (the oldest); whether the
   * chain's content changed.
   */
  const departed: Record<IpVersion, Map<string, number>> = { 4: new Map(), 6: new Map() };
  let departedTimer: NodeJS.Timeout | undefined;
  function recentlyGone(gone: readonly GoneAddress[]): boolean {
    const now = Date.now();
    let changed = false;
    for (const g of gone) {
      const m = departed[g.family];
      if (!m.has(g.net)) changed = true;
      m.delete(g.net);
      m.set(g.net, now + GONE_WINDOW_MS);
    }
    for (const f of families) {
      const m = departed[f];
      for (const [net, until] of m) {
        if (until > now && m.size <= GONE_CAP) break; // insertion order = expiry order
        m.delete(net);
        changed = true;
      }
    }
    clearTimeout(departedTimer);
    const next = Math.min(...families.flatMap((f) => [...departed[f].values()].slice(0, 1)));
    if (Number.isFinite(next) && !stopped) {
      // The window's end is a change of the driver's own chain: applied like a topology change.
      departedTimer = setTimeout(() => {
        if (recentlyGone([])) {
          bridges.setRevocation(epochs, goneNets(), false);
          loop.schedule();
        }
      }, Math.max(1_000, next - now));
      departedTimer.unref?.();
    }
    return changed;
  }
  const goneNets = () => Object.fromEntries(families.map((f) => [f, [...departed[f].keys()]]));

  /**
   * Deletes the queued addresses' connections (after the apply that removed
   * them from the sets). A failure fails the apply: the host's status says
   * so, and the loop retries with backoff (the addresses stay queued); a
   * revision is never reported applied while their connections may remain.
   */
  async function endGoneConnections(): Promise<void> {
    const gone = [...goneAddresses.values()];
    const targets = gone.map((g) => ({ family: g.family, net: g.net, zone: zoneOfTap.get(g.iface) }));
    const named = () => gone.map((g) => `${g.net}@${g.iface}`).slice(0, 20);
    let n: number;
    try {
      n = await deleteConntrack(runner, targets);
    } catch (err) {
      stats.connectionsDeleteFailed();
      throw new Error(`could not end the connections of addresses that left an endpoint (${named().join(", ")}): ${(err as Error).message}`);
    }
    for (const g of gone) goneAddresses.delete(`${g.family} ${g.net} ${g.iface}`);
    stats.connectionsDeleted(n);
    logger.info({ addresses: named(), deleted: n }, "deleted the connections of addresses that left an endpoint");
  }

  const loop = createApplyLoop<ApplyTicket>({
    dataplane: {
      detectDrift: () => dataplane.detectDrift(),
      async applyFrom(take) {
        const r = await dataplane.applyFrom(take);
        if (!goneAddresses.size) return r;
        const t0 = performance.now();
        await endGoneConnections();
        const ms = performance.now() - t0;
        return { ...r, durationMs: r.durationMs + ms, stages: { ...r.stages, conntrack: ms } };
      },
    },
    take() {
      const ticket = sync.takeTicket();
      const d = ticket.planned;
      const v = bridges.take(d);
      const changes = d ? revoke(ticket.revision, d, v.sets, v.changes) : v.changes;
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
    revisionOfEpoch: (f, epoch) => epochRevisions[f].get(epoch),
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
      clearTimeout(departedTimer);
      clearInterval(endedTimer);
      client?.stop();
      await monitor?.stop();
      // Rules stay in place: a stopped driver keeps enforcing the last state.
      // Let an in-flight restore finish (each table's restore is atomic), but
      // not for ever.
      await applies;
    },
  };
}
