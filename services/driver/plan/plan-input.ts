// What the driver asks the dataplane to program (DESIGN §6.7, §6.8): its
// base chains (rendered on this host), and either the controller's desired
// state or, before the first in-sync, fail-closed placeholders for the
// entry chains that a previous driver did not leave filled (adoption).
//
// Pure, and cheap on purpose: the result is a view, not a copy. The chains
// are the base chains layered under the desired ones and the sets are the
// desired state's own map, so building it costs nothing per chain or
// member; the dataplane reads it only while planning (synchronously) and
// keeps its own reference of what it wrote.
import { chainKey, keyOf, type ChainDef, type MacCheck } from "../../contract/host-update.js";
import type { IpVersion } from "../../model/index.js";
import { failClosedEntryChains, renderBaseChains } from "./base-chains.js";
import { renderBridgeChains } from "./bridge-guard.js";
import type { DesiredSet } from "../sync/desired-state.js";
import type { KernelState } from "../kernel/kernel-state.js";
import type { ChainLookup, PlanInput } from "./plan.js";

/** Per family, the current policy epoch (DESIGN §6.14); a family without one renders the plain fast path. */
export type Epochs = Partial<Record<IpVersion, number>>;
/** Per family, the addresses that recently left an endpoint of this host (DESIGN §6.14, no inheritance). */
export type GoneNets = Partial<Record<IpVersion, readonly string[]>>;

/**
 * The driver's own chains by chainKey(): base chains of each family, plus
 * `extra` (the flow-report chains, the zone chains). `bridgedTaps`, when given (br_netfilter
 * is present), adds the physdev forms and the bridge-port chains over these
 * taps (DESIGN §6.3). `epochs`, when given, are the families' policy
 * epochs (revoked connections end, DESIGN §6.14).
 */
export function driverBaseChains(prefixes: readonly string[], families: readonly IpVersion[], extra: readonly ChainDef[] = [], bridgedTaps?: readonly string[], epochs?: Epochs, gone?: GoneNets, mac6?: ReadonlyMap<string, MacCheck>): Map<string, ChainDef> {
  const base = driverHookChains(prefixes, families, extra, bridgedTaps !== undefined, epochs, gone);
  if (bridgedTaps) for (const c of driverBridgeChains(families, bridgedTaps, mac6)) base.set(keyOf(c), c);
  return base;
}

/**
 * The part of driverBaseChains() that follows the policy epochs and the
 * departed addresses: the base chains of each family (their physdev forms
 * when `bridged`) and `extra`. A handful of chains whatever the host's size,
 * so an epoch advance re-renders only these (BridgeLayer, DESIGN §6.14).
 */
export function driverHookChains(prefixes: readonly string[], families: readonly IpVersion[], extra: readonly ChainDef[], bridged: boolean, epochs?: Epochs, gone?: GoneNets): Map<string, ChainDef> {
  const base = new Map<string, ChainDef>();
  for (const f of families) for (const c of renderBaseChains(prefixes, f, bridged, epochs?.[f], gone?.[f])) base.set(keyOf(c), c);
  for (const c of extra) base.set(keyOf(c), c);
  return base;
}

/** The other part: the bridge-port chains and port guards over `taps`, one leaf per tap (DESIGN §6.3); independent of epochs. */
export function driverBridgeChains(families: readonly IpVersion[], taps: readonly string[], mac6?: ReadonlyMap<string, MacCheck>): ChainDef[] {
  return families.flatMap((f) => renderBridgeChains(f, taps, mac6));
}

/** `top` over `under`: a key of `top` hides the same key of `under`. */
export class LayeredChains implements ChainLookup {
  constructor(private readonly top: ReadonlyMap<string, ChainDef>, private readonly under: ReadonlyMap<string, ChainDef>) {}
  get(key: string): ChainDef | undefined {
    return this.top.get(key) ?? this.under.get(key);
  }
  has(key: string): boolean {
    return this.top.has(key) || this.under.has(key);
  }
  *values(): IterableIterator<ChainDef> {
    yield* this.top.values();
    for (const [k, c] of this.under) if (!this.top.has(k)) yield c;
  }
}

/**
 * Whether a leftover entry chain may be adopted: only one a previous driver
 * filled. A flushed (empty) or tampered leftover would let pal-FORWARD fall
 * through to its ACCEPT.
 */
function adoptable(kernel: KernelState | undefined, family: IpVersion, name: string): boolean {
  const left = kernel?.families[family].chains.get(name);
  return left !== undefined && left.hashes.length > 0 && left.hashes.every((h) => h !== "");
}

export function buildPlanInput(o: {
  base: ReadonlyMap<string, ChainDef>;
  families: readonly IpVersion[];
  /** The controller's state; undefined before the first in-sync. */
  desired?: { chains: ReadonlyMap<string, ChainDef>; sets: ReadonlyMap<string, DesiredSet> };
  /** What the kernel held at start (adoption of a previous driver's entry chains). */
  startKernel?: KernelState;
  /**
   * Before the first in-sync: sets the driver's own chains reference (the
   * per-port sets of bridged taps, DESIGN §6.3), created empty when the
   * kernel does not hold them yet; a previous driver's are adopted as they are.
   */
  driverSets?: ReadonlyMap<string, DesiredSet>;
}): PlanInput {
  const families = [...o.families];
  if (o.desired) return { chains: new LayeredChains(o.desired.chains, o.base), sets: o.desired.sets, families, removeUnwanted: true };
  // Before the first in-sync, entry chains that do not exist yet are
  // fail-closed placeholders; existing ones are left untouched (nothing is
  // removed before the first in-sync). A handful of chains: copied.
  const chains = new Map(o.base);
  for (const f of families) {
    for (const c of failClosedEntryChains(f)) if (!adoptable(o.startKernel, f, c.name)) chains.set(chainKey(f, c.name), c);
  }
  const sets = new Map<string, DesiredSet>();
  for (const [n, s] of o.driverSets ?? []) if (!o.startKernel?.sets.has(n)) sets.set(n, s);
  return { chains, sets, families, removeUnwanted: false };
}
