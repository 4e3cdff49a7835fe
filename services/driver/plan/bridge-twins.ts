// Host-local translation for bridged workload ports (DESIGN §6.3), between
// the controller's desired state and the planner. Pure: told the topology
// (which workload taps are ports of which bridge, and whether br_netfilter
// is present) and handed the desired state at each apply.
//
// The controller's hash:net,iface members name the tap: `ADDR,tapX`. A
// bridged frame's -i/-o is the bridge, so they never match it, and a member
// `ADDR,physdev:tapX` is never matched by `-m set` (measured, §6.3). What
// does match is `ADDR,brY`. So for every member `ADDR,tapX` of a controller
// hash:net,iface set, where tapX is a port of brY, this layer adds the
// *twin* `ADDR,brY` to the same set; the roots, the inactive drop, the
// nomac check and the flow-report points then work for bridged frames
// unchanged. A twin says (address, bridge), not the port: the per-port
// guard (bridge-guard.ts) checks the port, with one set per bridged tap,
// `pal4b-<tap>`/`pal6b-<tap>`, holding every ADDR of a member `ADDR,<tap>`.
//
// Twins are reference-counted per set (two ports of one bridge may hold one
// address in one set). A twin that would come from ports whose endpoints
// list *different* profiles (they disagree on some position set: not every
// port holding it in the active set holds it there too) is contested: its
// ports would get each other's profiles, so it is left out of every set
// (fail closed: those ports' traffic with that address is dropped) and the
// ports' status says why (contestedPorts). A set lookup matches any member
// net that holds the address, so a *range* twin (a port's CIDR pair) that
// overlaps another port's twin on the same bridge would lend that port its
// profiles at some positions: such a range twin is contested too, unless
// both twins are in exactly the same sets (the same profiles); the other
// port's own addresses are left alone.
//
// Incremental: each apply's changes are the controller's (DesiredChanges)
// plus what the twins and guard sets made of them and of topology changes,
// as member keys — the planner compares each with what it programmed.
import { keyOf, type ChainDef, type MacCheck } from "../../contract/host-update.js";
import { setTypeOf } from "../../contract/dataplane-names.js";
import type { IpVersion } from "../../model/index.js";
import type { DesiredChanges, DesiredSet } from "../sync/desired-state.js";
import { cidrContains, parseCidr } from "../../model/ip.js";
import { portSetName } from "./bridge-guard.js";
import { driverBridgeChains, driverHookChains, type Epochs, type GoneNets } from "./plan-input.js";

/**
 * The active set and the position sets (DESIGN §6.5), not the trees' node
 * sets: a twin whose ports do not all agree on them is contested. (`ic_`:
 * the class sets an older controller renders, one per port.)
 */
const CLASS_SET_RE = /^pal[46]i(?:-active$|p\d+_|x\d+$|c_)/;
const ACTIVE_SET_RE = /^pal[46]i-active$/;
/** Sets that hold each port's addresses once (the active set; an older controller's class sets): which port holds a twin. */
const ADDRESS_SET_RE = /^pal[46]i(?:-active$|c_)/;

/** A net's prefix is shorter than its family's: it covers other addresses. */
const isRange = (net: string) => {
  const c = parseCidr(net);
  return c !== undefined && c.prefix < (c.version === 4 ? 32 : 128);
};
/** Whether two nets share an address. */
const overlap = (a: string, b: string) => {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x !== undefined && y !== undefined && x.version === y.version && (cidrContains(x, y.version, y.addr) || cidrContains(y, x.version, x.addr));
};
const sameKeys = (a: ReadonlyMap<string, number> | undefined, b: ReadonlyMap<string, number> | undefined) =>
  (a?.size ?? 0) === (b?.size ?? 0) && [...(a?.keys() ?? [])].every((k) => b?.has(k));

/**
 * Whether the ports holding a twin disagree: some set holds it from fewer
 * ports than hold it at all (the active set's count; with class sets, one
 * per port, their sum).
 */
const disagree = (owners: ReadonlyMap<string, number> | undefined): boolean => {
  if (!owners || owners.size < 2) return false;
  let active: number | undefined;
  let sum = 0;
  for (const [set, c] of owners) {
    if (ACTIVE_SET_RE.test(set)) active = c;
    else sum += c;
  }
  const ports = active ?? sum;
  for (const c of owners.values()) if (c !== ports) return true;
  return false;
};

export interface BridgeTopology {
  /** br_netfilter is present in the driver's namespace: physdev rules may be rendered. */
  physdev: boolean;
  /** Workload tap -> the bridge it is a port of (taps with a workload prefix only). */
  ports: ReadonlyMap<string, string>;
}

/** What the layer reads of the controller's state (a DesiredState). */
export interface DesiredSource {
  readonly chains: ReadonlyMap<string, ChainDef>;
  readonly sets: ReadonlyMap<string, DesiredSet>;
  /** Endpoint key -> interface (which endpoint holds an interface: no inheritance, DESIGN §6.14). */
  readonly endpoints: ReadonlyMap<string, string>;
  /** Endpoint key -> its IPv6 MAC check, rendered in its bridged port's guard leaf. */
  readonly endpointMacs6?: ReadonlyMap<string, MacCheck>;
  takeChanges(): DesiredChanges | undefined;
}

export interface BridgeView {
  /** The driver's own chains by chainKey() (base, flow-report, bridge chains). */
  base: ReadonlyMap<string, ChainDef>;
  /** The sets to program: the controller's with twins, plus the per-port sets. */
  sets: ReadonlyMap<string, DesiredSet>;
  /** What may differ since the previous view; undefined = plan in full. */
  changes: DesiredChanges | undefined;
}

interface IfaceSet {
  family: IpVersion;
  /** The controller's members, as last seen. */
  base: Set<string>;
  /** What is programmed: base plus uncontested twins. */
  out: DesiredSet;
  /** Twin member -> how many base members make it. */
  twins: Map<string, number>;
}

function splitMember(m: string): [string, string] {
  const c = m.lastIndexOf(",");
  return [m.slice(0, c), m.slice(c + 1)];
}

export class BridgeLayer {
  private physdev = false;
  /** Effective ports: empty unless physdev. */
  private ports = new Map<string, string>();
  private source: DesiredSource | undefined;
  private readonly iface = new Map<string, IfaceSet>();
  /** Interface -> set -> addresses (the controller's members of hash:net,iface sets). */
  private readonly byIface = new Map<string, Map<string, Set<string>>>();
  /** Twin -> active or position set -> how many ports hold it there: counts that differ = contested. */
  private readonly classOwners = new Map<string, Map<string, number>>();
  /** The contested twins (few: the status reads them on every poll). */
  private readonly contestedTwins = new Set<string>();
  /** Twin -> tap -> count, from the address sets: which ports hold it. */
  private readonly twinPorts = new Map<string, Map<string, number>>();
  /** Bridge -> its range twins' nets (CIDR pairs): the only twins an overlap can contest. */
  private readonly bridgeRanges = new Map<string, Set<string>>();
  /** Bridge -> every twin net on it, from the address sets. */
  private readonly bridgeNets = new Map<string, Set<string>>();
  /** Range twins contested by an overlap with another port's twin, with the twin they overlap. */
  private readonly overlapContested = new Map<string, string>();
  /** Bridges whose address or position sets changed since the last settle: their overlaps are re-derived then. */
  private readonly overlapDirty = new Set<string>();
  /** Per-port set name -> address -> count. */
  private readonly portCounts = new Map<string, Map<string, number>>();
  private readonly view = new Map<string, DesiredSet>();
  private base = new Map<string, ChainDef>();
  /** Set -> members that may have changed since the last view(). */
  private readonly pendingSets = new Map<string, Set<string> | "all">();
  private readonly pendingChains = new Set<string>();
  /** iface-set members to re-derive (set -> members). */
  private readonly dirty = new Map<string, Set<string>>();

  /** The driver's other own chains (flow reports, conntrack zones): part of the base. */
  private extra: readonly ChainDef[];

  /** The families' policy epochs (DESIGN §6.14); empty when revoked connections are left alone. */
  private epochs: Epochs;
  /** Addresses that recently left an endpoint (pal-ct-gone, DESIGN §6.14). */
  private gone: GoneNets = {};

  /** Endpoint key -> its interface as last seen (to find the interface it left). */
  private readonly keyTap = new Map<string, string>();
  /** Interface -> the endpoint keys on it (more than one: contested, nothing placed). */
  private readonly tapKeys = new Map<string, Set<string>>();
  /** Interface -> the IPv6 MAC check of its one endpoint (the guard leaf's, bridge-guard.ts). */
  private readonly mac6 = new Map<string, MacCheck>();
  /** The bridge-port and guard chains as last rendered (see rebuildChains()). */
  private bridge = new Map<string, ChainDef>();
  /** Whether what `bridge` is rendered from (physdev, the bridged taps, mac6) moved since. */
  private bridgeStale = true;

  constructor(private readonly o: { prefixes: readonly string[]; families: readonly IpVersion[]; extraChains?: readonly ChainDef[]; epochs?: Epochs }) {
    this.extra = o.extraChains ?? [];
    this.epochs = { ...o.epochs };
    this.base = driverHookChains(o.prefixes, o.families, this.extra, false, this.epochs);
  }

  /** The driver's own chains as they are now. */
  baseChains(): ReadonlyMap<string, ChainDef> {
    return this.base;
  }

  /**
   * New policy epochs and departed addresses (DESIGN §6.14). Decided while
   * an apply is planned (after take(), `forThisApply`): the base chains are
   * rebuilt and the keys that changed are returned for that same apply,
   * not left pending for the next. Otherwise (a departed address's window
   * ending) they are pending, as for a topology change, and returned too.
   */
  setRevocation(epochs: Epochs, gone: GoneNets, forThisApply: boolean): Set<string> {
    this.epochs = { ...epochs };
    this.gone = { ...gone };
    const before = new Set(this.pendingChains);
    this.rebuildChains();
    const changed = new Set<string>();
    for (const k of this.pendingChains) if (!before.has(k)) { changed.add(k); if (forThisApply) this.pendingChains.delete(k); }
    return changed;
  }

  /**
   * New extra chains (the conntrack-zone chain follows the host's bridges,
   * DESIGN §6.13). Returns whether a base chain changed (then an apply is
   * due; the change reaches it like a topology change, through take()).
   */
  setExtraChains(chains: readonly ChainDef[]): boolean {
    this.extra = chains;
    return this.rebuildChains();
  }

  /** The bridged taps this layer works for (sorted). */
  bridgedTaps(): string[] {
    return [...this.ports.keys()].sort();
  }

  /**
   * A new topology (from the driver's poll). Returns whether anything the
   * driver programs changed (then an apply is due).
   */
  setTopology(t: BridgeTopology): boolean {
    const next = new Map<string, string>(t.physdev ? t.ports : []);
    const physdevChanged = t.physdev !== this.physdev;
    this.physdev = t.physdev;
    let changed = physdevChanged;
    for (const [tap, br] of this.ports) if (next.get(tap) !== br) { this.unplug(tap, br); changed = true; }
    for (const [tap, br] of next) if (this.ports.get(tap) !== br) { this.plug(tap, br); changed = true; }
    if (changed) {
      this.settle();
      this.bridgeStale = true;
      this.rebuildChains();
    }
    return changed;
  }

  /** The state for one apply: taken when its plan is made (consumes the changes). */
  take(d: DesiredSource | undefined): BridgeView {
    if (d !== this.source) {
      if (d) d.takeChanges(); // start the new state's change log; this view is planned in full
      this.reset(d);
      return { base: this.base, sets: this.view, changes: undefined };
    }
    if (!d) {
      this.clearPending();
      return { base: this.base, sets: this.view, changes: undefined };
    }
    const c = d.takeChanges();
    if (!c) {
      this.reset(d);
      return { base: this.base, sets: this.view, changes: undefined };
    }
    for (const [name, touched] of c.sets) this.controllerSet(name, touched);
    this.settle();
    if (c.endpoints && this.endpointsChanged(c.endpoints)) this.rebuildChains();
    const sets = new Map<string, ReadonlySet<string> | "all">(this.pendingSets);
    const chains = new Set([...c.chains, ...this.pendingChains]);
    this.clearPending();
    return { base: this.base, sets: this.view, changes: { chains, sets, endpoints: c.endpoints } };
  }

  /**
   * Ports whose addresses are contested on their bridge, with why (their
   * endpoints' status says it, DESIGN §6.3).
   */
  contestedPorts(): Map<string, string> {
    const out = new Map<string, string>();
    for (const twin of this.contestedTwins) {
      const owners = this.classOwners.get(twin)!;
      const [addr, br] = splitMember(twin);
      const taps: string[] = [];
      for (const [tap, b] of this.ports) {
        if (b !== br) continue;
        const sets = this.byIface.get(tap);
        if (sets && [...owners.keys()].some((s) => sets.get(s)?.has(addr))) taps.push(tap);
      }
      taps.sort();
      for (const tap of taps) {
        const others = taps.filter((t) => t !== tap).join(", ");
        const why = `address ${addr} is also claimed on bridge ${br} by ${others || "another port"} with other profiles: dropped for both (DESIGN §6.3)`;
        out.set(tap, out.has(tap) ? `${out.get(tap)}; ${why}` : why);
      }
    }
    for (const [twin, other] of this.overlapContested) {
      const [net, br] = splitMember(twin);
      const [otherNet] = splitMember(other);
      const others = [...(this.twinPorts.get(other)?.keys() ?? [])].sort().join(", ");
      for (const tap of [...(this.twinPorts.get(twin)?.keys() ?? [])].sort()) {
        const why = `range ${net} overlaps ${otherNet} of ${others || "another port"} on bridge ${br}, with other profiles: the range is dropped on this port (DESIGN §6.3)`;
        out.set(tap, out.has(tap) ? `${out.get(tap)}; ${why}` : why);
      }
    }
    return out;
  }

  // ---- internals ----

  private clearPending(): void {
    this.pendingSets.clear();
    this.pendingChains.clear();
  }

  private touch(set: string, member: string | "all"): void {
    const p = this.pendingSets.get(set);
    if (p === "all") return;
    if (member === "all") { this.pendingSets.set(set, "all"); return; }
    if (p) p.add(member);
    else this.pendingSets.set(set, new Set([member]));
  }

  private markDirty(set: string, member: string): void {
    let s = this.dirty.get(set);
    if (!s) this.dirty.set(set, (s = new Set()));
    s.add(member);
  }

  private reset(d: DesiredSource | undefined): void {
    this.source = d;
    this.iface.clear();
    this.byIface.clear();
    this.classOwners.clear();
    this.contestedTwins.clear();
    this.twinPorts.clear();
    this.bridgeRanges.clear();
    this.bridgeNets.clear();
    this.overlapContested.clear();
    this.overlapDirty.clear();
    this.view.clear();
    this.dirty.clear();
    for (const c of this.portCounts.values()) c.clear();
    for (const tap of this.ports.keys()) this.addPortSets(tap);
    if (d) for (const [name, s] of d.sets) this.controllerSet(name, "all", s);
    this.settle();
    this.keyTap.clear();
    this.tapKeys.clear();
    this.mac6.clear();
    this.bridgeStale = true;
    if (d) this.endpointsChanged(d.endpoints.keys());
    this.rebuildChains();
    this.clearPending();
  }

  /** One controller set changed (touched members, or "all"). */
  private controllerSet(name: string, touched: ReadonlySet<string> | "all", given?: DesiredSet): void {
    const want = given ?? this.source?.sets.get(name);
    if (setTypeOf(name) !== "hash:net,iface") {
      // No twins: the controller's own object, as the planner would see it without this layer.
      if (want) this.view.set(name, want);
      else this.view.delete(name);
      if (touched === "all") this.touch(name, "all");
      else for (const m of touched) this.touch(name, m);
      return;
    }
    let st = this.iface.get(name);
    if (st && (!want || want.family !== st.family)) {
      for (const m of [...st.base]) this.baseMember(name, st, m, false);
      this.settleSet(name);
      this.iface.delete(name);
      this.view.delete(name);
      this.touch(name, "all");
      st = undefined;
    }
    if (!want) return;
    if (!st) {
      st = { family: want.family, base: new Set(), out: { family: want.family, members: new Set() }, twins: new Map() };
      this.iface.set(name, st);
      this.view.set(name, st.out);
      this.touch(name, "all");
      for (const m of want.members) this.baseMember(name, st, m, true);
      return;
    }
    if (touched === "all") {
      for (const m of want.members) this.baseMember(name, st, m, true);
      for (const m of [...st.base]) if (!want.members.has(m)) this.baseMember(name, st, m, false);
    } else {
      for (const m of touched) this.baseMember(name, st, m, want.members.has(m));
    }
  }

  private baseMember(set: string, st: IfaceSet, m: string, present: boolean): void {
    if (st.base.has(m) === present) return;
    if (present) st.base.add(m);
    else st.base.delete(m);
    this.markDirty(set, m);
    const [addr, ifc] = splitMember(m);
    let sets = this.byIface.get(ifc);
    if (!sets) this.byIface.set(ifc, (sets = new Map()));
    let addrs = sets.get(set);
    if (!addrs) sets.set(set, (addrs = new Set()));
    if (present) addrs.add(addr);
    else {
      addrs.delete(addr);
      if (!addrs.size) sets.delete(set);
      if (!sets.size) this.byIface.delete(ifc);
    }
    const br = this.ports.get(ifc);
    if (br !== undefined) this.contribute(set, st, addr, ifc, br, present ? 1 : -1);
  }

  /** A base member `addr,tap` of `set` on bridge `br` counts (d = +1) or stops counting (-1). */
  private contribute(set: string, st: IfaceSet, addr: string, tap: string, br: string, d: 1 | -1): void {
    const twin = `${addr},${br}`;
    const n = (st.twins.get(twin) ?? 0) + d;
    if (n > 0) st.twins.set(twin, n);
    else st.twins.delete(twin);
    this.markDirty(set, twin);
    if (ADDRESS_SET_RE.test(set)) {
      let ports = this.twinPorts.get(twin);
      if (!ports) this.twinPorts.set(twin, (ports = new Map()));
      const c = (ports.get(tap) ?? 0) + d;
      if (c > 0) ports.set(tap, c);
      else ports.delete(tap);
      let nets = this.bridgeNets.get(br);
      if (!ports.size) {
        this.twinPorts.delete(twin);
        nets?.delete(addr);
        this.bridgeRanges.get(br)?.delete(addr);
      } else {
        if (!nets) this.bridgeNets.set(br, (nets = new Set()));
        nets.add(addr);
        if (isRange(addr)) {
          let r = this.bridgeRanges.get(br);
          if (!r) this.bridgeRanges.set(br, (r = new Set()));
          r.add(addr);
        }
      }
    }
    if (CLASS_SET_RE.test(set) && (this.bridgeRanges.get(br)?.size || this.overlapContested.size)) this.overlapDirty.add(br);
    if (CLASS_SET_RE.test(set)) {
      let owners = this.classOwners.get(twin);
      const before = disagree(owners);
      if (!owners) this.classOwners.set(twin, (owners = new Map()));
      const k = (owners.get(set) ?? 0) + d;
      if (k > 0) owners.set(set, k);
      else owners.delete(set);
      if (!owners.size) this.classOwners.delete(twin);
      if (before !== disagree(owners)) {
        if (before) this.contestedTwins.delete(twin);
        else this.contestedTwins.add(twin);
        // Contested or no longer: every set holding this twin re-derives it.
        for (const [name, s] of this.iface) if (s.twins.has(twin)) this.markDirty(name, twin);
      }
    }
    const ps = portSetName(st.family, tap);
    const counts = this.portCounts.get(ps);
    if (!counts) return;
    const c = (counts.get(addr) ?? 0) + d;
    if (c > 0) counts.set(addr, c);
    else counts.delete(addr);
    this.portMember(ps, addr, br);
  }

  /**
   * A port's guard set holds an address of the port's while no overlap
   * contests it: a contested range (DESIGN §6.3) is not the port's to send
   * from on the bridge either — else the port could send as the other
   * port's address inside it and be judged by that port's profiles.
   */
  private portMember(ps: string, addr: string, br: string): void {
    const out = this.view.get(ps);
    if (!out) return;
    const want = (this.portCounts.get(ps)?.has(addr) ?? false) && !this.overlapContested.has(`${addr},${br}`);
    if (want === out.members.has(addr)) return;
    if (want) out.members.add(addr);
    else out.members.delete(addr);
    this.touch(ps, addr);
  }

  private contested(twin: string): boolean {
    return disagree(this.classOwners.get(twin)) || this.overlapContested.has(twin);
  }

  /**
   * Which range twins of a bridge overlap another port's twin there with
   * other profiles (DESIGN §6.3): re-derived when a twin of the bridge or
   * its sets change, only while the bridge has range twins (CIDR pairs:
   * rare); every set holding a twin whose verdict changed re-derives it.
   */
  private refreshOverlaps(br: string): void {
    const ranges = this.bridgeRanges.get(br);
    for (const net of ranges ?? []) {
      const twin = `${net},${br}`;
      const mine = this.twinPorts.get(twin);
      let hit: string | undefined;
      for (const o of this.bridgeNets.get(br) ?? []) {
        if (o === net || !overlap(net, o)) continue;
        const other = `${o},${br}`;
        // The same port's own addresses inside its range, or the same profiles: no harm.
        if (sameKeys(mine, this.twinPorts.get(other)) || sameKeys(this.classOwners.get(twin), this.classOwners.get(other))) continue;
        hit = other;
        break;
      }
      if ((hit !== undefined) === this.overlapContested.has(twin) && (hit === undefined || this.overlapContested.get(twin) === hit)) continue;
      const changed = (hit !== undefined) !== this.overlapContested.has(twin);
      if (hit !== undefined) this.overlapContested.set(twin, hit);
      else this.overlapContested.delete(twin);
      if (changed) this.overlapChanged(twin);
    }
    for (const twin of [...this.overlapContested.keys()]) {
      const [net, b] = splitMember(twin);
      if (b === br && !ranges?.has(net)) {
        this.overlapContested.delete(twin);
        this.overlapChanged(twin);
      }
    }
  }

  /** A range twin became contested or no longer is: the sets holding it and its ports' guard sets re-derive it. */
  private overlapChanged(twin: string): void {
    for (const [name, st] of this.iface) if (st.twins.has(twin)) this.markDirty(name, twin);
    const [net, br] = splitMember(twin);
    const family: IpVersion = net.includes(":") ? 6 : 4;
    for (const [tap, b] of this.ports) if (b === br) this.portMember(portSetName(family, tap), net, br);
  }

  private settleSet(name: string): void {
    const st = this.iface.get(name);
    const ms = this.dirty.get(name);
    this.dirty.delete(name);
    if (!st || !ms) return;
    for (const m of ms) {
      const want = st.base.has(m) || (st.twins.has(m) && !this.contested(m));
      if (want === st.out.members.has(m)) continue;
      if (want) st.out.members.add(m);
      else st.out.members.delete(m);
      this.touch(name, m);
    }
  }

  private settle(): void {
    for (const br of this.overlapDirty) this.refreshOverlaps(br);
    this.overlapDirty.clear();
    for (const name of [...this.dirty.keys()]) this.settleSet(name);
  }

  /**
   * Endpoints updated or removed: their interfaces' IPv6 MAC checks follow.
   * Returns whether a bridged port's check changed (its guard leaf then).
   */
  private endpointsChanged(keys: Iterable<string>): boolean {
    const taps = new Set<string>();
    for (const k of keys) {
      const was = this.keyTap.get(k);
      const now = this.source?.endpoints.get(k);
      if (was !== undefined) taps.add(was);
      if (was !== undefined && was !== now) {
        const ks = this.tapKeys.get(was)!;
        ks.delete(k);
        if (!ks.size) this.tapKeys.delete(was);
        this.keyTap.delete(k);
      }
      if (now !== undefined) {
        taps.add(now);
        this.keyTap.set(k, now);
        let ks = this.tapKeys.get(now);
        if (!ks) this.tapKeys.set(now, (ks = new Set()));
        ks.add(k);
      }
    }
    let changed = false;
    for (const tap of taps) {
      const ks = this.tapKeys.get(tap);
      // Two endpoints on one interface: the controller places neither (the
      // port's set is empty, the guard drops), so neither's MACs are meant.
      const want = ks?.size === 1 ? this.source?.endpointMacs6?.get(ks.values().next().value!) : undefined;
      if (JSON.stringify(want) === JSON.stringify(this.mac6.get(tap))) continue;
      if (want) this.mac6.set(tap, want);
      else this.mac6.delete(tap);
      this.bridgeStale = true;
      if (this.ports.has(tap)) changed = true;
    }
    return changed;
  }

  private addPortSets(tap: string): void {
    for (const f of this.o.families) {
      const name = portSetName(f, tap);
      if (!this.portCounts.has(name)) this.portCounts.set(name, new Map());
      this.view.set(name, { family: f, members: new Set() });
      this.touch(name, "all");
    }
  }

  private plug(tap: string, br: string): void {
    this.ports.set(tap, br);
    this.addPortSets(tap);
    for (const [set, addrs] of this.byIface.get(tap) ?? []) {
      const st = this.iface.get(set)!;
      for (const a of addrs) this.contribute(set, st, a, tap, br, 1);
    }
  }

  private unplug(tap: string, br: string): void {
    for (const [set, addrs] of this.byIface.get(tap) ?? []) {
      const st = this.iface.get(set)!;
      for (const a of addrs) this.contribute(set, st, a, tap, br, -1);
    }
    this.ports.delete(tap);
    for (const f of this.o.families) {
      const name = portSetName(f, tap);
      this.portCounts.delete(name);
      this.view.delete(name);
      this.touch(name, "all");
    }
  }

  /**
   * Renders the driver's chains again. The bridge-port and guard chains (a
   * leaf per bridged tap: 6,000 taps, a tree of thousands of chains) depend
   * only on the taps and their IPv6 MAC checks, so they are rendered and
   * compared only when one of those moved (`bridgeStale`); an epoch advance
   * or a departed address, on every revoking apply, re-renders and compares
   * the few hook chains alone. (Rendering the trees each time was 12 ms of a
   * revocation's driver time at 6,000 bridged taps.)
   */
  private rebuildChains(): boolean {
    const hooks = driverHookChains(this.o.prefixes, this.o.families, this.extra, this.physdev, this.epochs, this.gone);
    let bridgeRebuilt = false;
    if (this.bridgeStale) {
      this.bridge = new Map(this.physdev ? driverBridgeChains(this.o.families, this.bridgedTaps(), this.mac6).map((c) => [keyOf(c), c]) : []);
      this.bridgeStale = false;
      bridgeRebuilt = true;
    }
    const next = new Map([...hooks, ...this.bridge]);
    let changed = false;
    const differs = (k: string, c: ChainDef) => {
      const old = this.base.get(k);
      return !old || old.rules.length !== c.rules.length || old.rules.some((r, i) => r !== c.rules[i]);
    };
    for (const [k, c] of bridgeRebuilt ? next : hooks) if (differs(k, c)) { this.pendingChains.add(k); changed = true; }
    for (const k of this.base.keys()) if (!next.has(k)) { this.pendingChains.add(k); changed = true; }
    this.base = next;
    return changed;
  }
}

