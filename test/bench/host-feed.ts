// One host (IPv4 only) as its driver sees it, fed by the real calculation
// graph: the driver's own plan input (plan-input.ts) over a DesiredState,
// and what changed since the last apply, as the driver hands them to its
// dataplane. Used by the driver and density sections.
//
// Two topologies (DESIGN §6.3, §8.6). "routed": the workload taps are routed
// interfaces, the controller's state is planned as it is. "bridged": every
// tap is a port of a Linux bridge (BRIDGE_PORTS ports per bridge, `brq<n>`,
// as the linuxbridge agent names one per network) with br_netfilter present,
// and the state passes through the driver's own BridgeLayer exactly as
// services/driver/driver.ts does it (twins, per-port sets, guard chains).
import { CalcGraph, DEFAULT_CALC_CONFIG, type HostUpdate } from "../../services/calc/index.js";
import { DesiredState, type DesiredSet } from "../../services/driver/sync/desired-state.js";
import { setCreate, type PlanInput } from "../../services/driver/plan/plan.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { BridgeLayer } from "../../services/driver/plan/bridge-twins.js";
import { renderFlowLogChains } from "../../services/driver/flows/flow-log-chains.js";
import { FLOW_DEFAULTS } from "../../services/driver/flows/flow-reporter.js";
import type { Endpoint, Profile } from "../../services/model/index.js";
import type { ApplySource } from "../../services/driver/apply/dataplane.js";
import type { CommandRunner } from "../../services/driver/kernel/command-runner.js";

export type Topology = "routed" | "bridged";
export const TOPOLOGIES: readonly Topology[] = ["routed", "bridged"];

/** Ports per bridge on the bridged topology: a network of a few dozen VMs on one hypervisor. */
export const BRIDGE_PORTS = 40;

const PREFIXES = ["tap"];
const FAMILIES = [4] as const;
/** The driver's own flow-report chains (DESIGN §6.12): it always programs them, and the bridge guard's drops report through them. */
const OWN_CHAINS = renderFlowLogChains(FLOW_DEFAULTS, 4);


/** Raw `ipset restore` / `iptables-restore --noflush` input for one change (rawChangeText). */
export type RawChange = ReturnType<typeof rawChangeText>;

/**
 * The bridged host: the controller's state through a BridgeLayer, as the
 * driver's apply loop takes it (driver.ts, createApplyLoop's take()).
 */
class BridgedView {
  readonly layer = new BridgeLayer({ prefixes: PREFIXES, families: FAMILIES, extraChains: OWN_CHAINS });
  private last: ApplySource | undefined;

  constructor(private readonly state: DesiredState, ports: ReadonlyMap<string, string>) {
    this.layer.setTopology({ physdev: true, ports });
  }

  setPorts(ports: ReadonlyMap<string, string>): void {
    this.layer.setTopology({ physdev: true, ports });
  }

  take(): ApplySource & { sets: ReadonlyMap<string, DesiredSet> } {
    const v = this.layer.take(this.state);
    const input = buildPlanInput({ base: v.base, families: FAMILIES, desired: { chains: this.state.chains, sets: v.sets }, driverSets: v.sets });
    this.last = { input, changes: v.changes };
    return { ...this.last, sets: v.sets };
  }

  /** The input of the last take(). */
  input(): PlanInput {
    return (this.last ?? this.take()).input;
  }
}

export function createHostFeed(profiles: Profile[], endpoints: Endpoint[], opts: { host?: string; topology?: Topology } = {}) {
  const host = opts.host ?? "hv0";
  const topology = opts.topology ?? "routed";
  let pending: HostUpdate[] = [];
  // Only this host's updates: a model may hold endpoints of other hosts
  // (the revoke section's tag members), whose own chains are not ours.
  const g = new CalcGraph({ onHostUpdates: (h, _r, u) => { if (h === host) pending.push(...u); } }, DEFAULT_CALC_CONFIG);
  for (const p of profiles) g.upsertProfile(p);
  for (const e of endpoints) g.upsertEndpoint(e);
  g.flush(1);
  // What a controller sends a host without IPv6.
  const v4 = (u: HostUpdate[]) => u.filter((x) => (x.type === "chain-update" ? x.chain.family : "family" in x ? x.family : 4) === 4);
  const state = new DesiredState();
  const snapshot = v4(g.snapshot(host).updates);
  state.apply(snapshot);
  pending = [];
  const base = driverBaseChains(PREFIXES, FAMILIES, OWN_CHAINS);
  let rev = 1;

  // Bridged: which bridge each tap is a port of, in plugging order.
  const ports = new Map<string, string>();
  const plug = (tap: string) => {
    if (!ports.has(tap)) ports.set(tap, `brq${Math.floor(ports.size / BRIDGE_PORTS)}`);
  };
  let driverView: BridgedView | undefined;
  // The raw floor's reference (bridged): a second DesiredState and layer
  // fed the same updates, whose view changes after each change are what the
  // kernel must receive for it; kept apart so that the driver path's own
  // take() (timed) is the one the driver makes.
  let ref: { state: DesiredState; view: BridgedView; programmed: Map<string, { family: 4 | 6; members: Set<string> }> } | undefined;
  if (topology === "bridged") {
    for (const e of endpoints) if (e.host === host) plug(e.name);
    driverView = new BridgedView(state, ports);
    const refState = new DesiredState();
    refState.apply(snapshot);
    const view = new BridgedView(refState, ports);
    const first = view.take();
    const programmed = new Map([...first.sets].map(([n, s]) => [n, { family: s.family as 4 | 6, members: new Set(s.members) }]));
    ref = { state: refState, view, programmed };
  }

  return {
    topology,
    /** What the controller sent this host first (IPv4): the starting state of another driver fed alongside. */
    snapshot: snapshot as readonly HostUpdate[],
    /** Bridge of each bridged tap (empty when routed). */
    ports: ports as ReadonlyMap<string, string>,
    /** The host's plan input now (not consuming changes): what a full apply programs. */
    input: (): PlanInput => (ref ? ref.view.input() : buildPlanInput({ base, families: FAMILIES, desired: state })),
    /**
     * What the driver hands its dataplane at an apply: the plan input and
     * what changed since the previous take() (undefined the first time: plan
     * in full). Bridged: the BridgeLayer's take(), as the driver makes it.
     */
    take(): ApplySource {
      if (driverView) {
        const { input, changes } = driverView.take();
        return { input, changes };
      }
      return { input: buildPlanInput({ base, families: FAMILIES, desired: state }), changes: state.takeChanges() };
    },
    /**
     * One model change and flush. `plug`: taps that became bridge ports with
     * it (bridged; a new VM's tap, as the driver's poll would see it).
     * Returns the updates the controller sent this host and the raw floor:
     * routed, exactly those updates; bridged, those plus the twins, per-port
     * set members and guard chains the BridgeLayer derived from them.
     */
    change(fn: (g: CalcGraph) => void, o: { plug?: readonly string[] } = {}): { updates: HostUpdate[]; raw: RawChange } {
      if (ref && o.plug?.length) {
        for (const t of o.plug) plug(t);
        driverView!.setPorts(ports);
        ref.view.setPorts(ports);
      }
      fn(g);
      g.flush(++rev);
      const u = v4(pending);
      pending = [];
      state.apply(u);
      if (!ref) return { updates: u, raw: rawChangeText(u) };
      ref.state.apply(u);
      return { updates: u, raw: rawChangeText(derivedUpdates(ref.view.take(), ref.programmed)) };
    },
  };
}

/**
 * What the kernel must receive for one bridged change, as updates: the
 * view's changed chains as they now are, and per changed set what differs
 * from what was programmed (`programmed` is brought up to date). The view's
 * changes name keys only (DesiredChanges); the members are diffed here.
 */
function derivedUpdates(v: ApplySource & { sets: ReadonlyMap<string, DesiredSet> }, programmed: Map<string, { family: 4 | 6; members: Set<string> }>): HostUpdate[] {
  if (!v.changes) throw new Error("bench: the bridged reference view was planned in full after a change");
  const out: HostUpdate[] = [];
  for (const [name, touched] of v.changes.sets) {
    const now = v.sets.get(name);
    const was = programmed.get(name);
    if (!now) {
      if (was) out.push({ type: "ipset-remove", name, family: was.family });
      programmed.delete(name);
      continue;
    }
    if (was && was.family !== now.family) throw new Error(`bench: set ${name} changed family`);
    if (!was) {
      out.push({ type: "ipset-update", name, family: now.family, members: [...now.members] });
      programmed.set(name, { family: now.family as 4 | 6, members: new Set(now.members) });
      continue;
    }
    const keys = touched === "all" ? new Set([...was.members, ...now.members]) : touched;
    const added: string[] = [];
    const removed: string[] = [];
    for (const m of keys) {
      const want = now.members.has(m);
      if (want === was.members.has(m)) continue;
      if (want) { added.push(m); was.members.add(m); } else { removed.push(m); was.members.delete(m); }
    }
    if (added.length || removed.length) out.push({ type: "ipset-delta", name, family: now.family, added, removed });
  }
  for (const key of v.changes.chains) {
    const parts = key.split(":");
    if (parts.length !== 2) throw new Error(`bench: chain ${key} is not in the filter table (the raw floor writes filter only)`);
    const c = v.input.chains.get(key);
    if (c) out.push({ type: "chain-update", chain: c });
    else out.push({ type: "chain-remove", table: "filter", family: Number(parts[0]) as 4 | 6, name: parts[1]! });
  }
  return out;
}

/**
 * The updates a host was sent, as raw `ipset restore` / `iptables-restore
 * --noflush` input (IPv4): the floor a driver applying exactly that can be
 * compared with. Sets are created first and deletions precede additions, as
 * the kernel needs (a list:set's members are sets; a bitmap:ip,mac member is
 * its address).
 */
export function rawChangeText(updates: HostUpdate[]): { ipsetBefore: string[]; restore: string | undefined; ipsetAfter: string[] } {
  const [creates, dels, adds, ipsetAfter, declare, rules, remove] = [[], [], [], [], [], [], []] as string[][];
  for (const u of updates) {
    if (u.type === "ipset-update" && u.family === 4) {
      creates!.push(`${setCreate(u.name, u)} -exist`);
      dels!.push(`flush ${u.name}`);
      adds!.push(...u.members.map((m) => `add ${u.name} ${m} -exist`));
    } else if (u.type === "ipset-delta" && u.family === 4) {
      dels!.push(...u.removed.map((m) => `del ${u.name} ${m} -exist`));
      adds!.push(...u.added.map((m) => `add ${u.name} ${m} -exist`));
    } else if (u.type === "ipset-remove" && u.family === 4) {
      ipsetAfter!.push(`destroy ${u.name}`);
    } else if (u.type === "chain-update" && u.chain.family === 4) {
      declare!.push(`:${u.chain.name} - [0:0]`);
      rules!.push(...u.chain.rules.map((r) => `-A ${u.chain.name} ${r}`));
    } else if (u.type === "chain-remove" && u.family === 4) {
      declare!.push(`:${u.name} - [0:0]`);
      remove!.push(`-X ${u.name}`);
    }
  }
  const restore = declare!.length ? ["*filter", ...declare!, ...rules!, ...remove!, "COMMIT", ""].join("\n") : undefined;
  return { ipsetBefore: [...creates!, ...dels!, ...adds!], restore, ipsetAfter: ipsetAfter! };
}

/** Bytes of a raw change's text. */
export function rawBytes(t: RawChange): number {
  return (t.restore?.length ?? 0) + t.ipsetBefore.join("\n").length + t.ipsetAfter.join("\n").length;
}

/** Writes a raw change as the floor does: sets first, the chains, then set removals (the order the kernel needs). */
export async function applyRawChange(run: CommandRunner, restoreCmd: string, t: RawChange): Promise<void> {
  if (t.ipsetBefore.length) await run.run("ipset", ["restore"], `${t.ipsetBefore.join("\n")}\n`);
  if (t.restore) await run.run(restoreCmd, ["--noflush", "--wait", "10"], t.restore);
  if (t.ipsetAfter.length) await run.run("ipset", ["restore"], `${t.ipsetAfter.join("\n")}\n`);
}
