// What the driver last programmed successfully: the drift reference
// (DESIGN §6.9) and the "before" of every incremental plan (DESIGN §6.7).
// Owned by the dataplane: its sets are its own copies, never the desired
// state's (deltas keep arriving while an apply runs), and it changes only
// when an apply succeeded — in full after a full apply, by the plan's own
// edits after an incremental one, so an apply that changes one member
// costs one member here too.
import { keyOf, type ChainDef } from "../../contract/host-update.js";
import type { IpVersion } from "../../model/index.js";
import type { DesiredSet } from "../sync/desired-state.js";
import { emptyFamilyState, rangeText, TABLE_HOOKS, TABLES, tableState, type KernelState } from "../kernel/kernel-state.js";
import { macSetRange, setTypeOf } from "../../contract/dataplane-names.js";
import { hookRule, hooksWanted, type PlanInput } from "./plan.js";
import type { ReferenceEdit } from "./plan-changes.js";
import { chainHashes } from "./rule-hash.js";

export class ProgrammedState {
  /** By chainKey(); only chains of the programmed families. */
  readonly chains = new Map<string, ChainDef>();
  readonly sets = new Map<string, DesiredSet>();
  /** Rules in our chains per family (metrics), kept with the chains. */
  readonly rules: Record<IpVersion, number> = { 4: 0, 6: 0 };

  private constructor(readonly families: readonly IpVersion[], readonly removeUnwanted: boolean) {}

  /** A full copy of `input` (after a full apply only: that one cost O(everything) anyway). */
  static copyOf(input: PlanInput): ProgrammedState {
    const p = new ProgrammedState([...input.families], input.removeUnwanted);
    for (const c of input.chains.values()) if (p.families.includes(c.family)) p.setChain(keyOf(c), c);
    for (const [n, s] of input.sets) p.sets.set(n, { ...s, members: new Set(s.members) });
    return p;
  }

  edit(edits: readonly ReferenceEdit[]): void {
    for (const e of edits) {
      if (e.op === "chain") this.setChain(e.key, e.chain);
      else if (e.op === "set") (e.set ? this.sets.set(e.name, e.set) : this.sets.delete(e.name));
      else if (e.present) this.sets.get(e.name)!.members.add(e.member);
      else this.sets.get(e.name)!.members.delete(e.member);
    }
  }

  private setChain(key: string, c: ChainDef | undefined): void {
    const old = this.chains.get(key);
    if (old) this.rules[old.family] -= old.rules.length;
    if (c) { this.chains.set(key, c); this.rules[c.family] += c.rules.length; }
    else this.chains.delete(key);
  }

  /** As the planner's input (drift checks plan against it). */
  asPlanInput(): PlanInput {
    return { chains: this.chains, sets: this.sets, families: [...this.families], removeUnwanted: this.removeUnwanted };
  }

  /**
   * The kernel as this reference says it is (hooks in place, no set
   * references known): for a full plan without a read-back, e.g. after a
   * new snapshot replaced the desired state. Without set references, a set
   * that such a plan must re-create in another type or family cannot be
   * destroyed (still referenced): that apply fails, and its retry plans
   * against a read-back, which knows the references.
   */
  kernelState(): KernelState {
    const k: KernelState = { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, raw: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() };
    for (const f of this.families) {
      for (const t of TABLES) {
        for (const [b, target] of Object.entries(TABLE_HOOKS[t])) {
          if (!hooksWanted(this, t, f, target)) continue;
          tableState(k, t, f).hookPositions.set(b, [1]);
          tableState(k, t, f).firstRuleHash.set(b, hookRule(b, t).hash);
        }
      }
    }
    for (const c of this.chains.values()) tableState(k, c.table, c.family).chains.set(c.name, { hashes: chainHashes(c) });
    for (const [n, s] of this.sets) {
      const range = macSetRange(n);
      k.sets.set(n, { family: s.family, type: setTypeOf(n), ...(range !== undefined ? { range: rangeText(range)! } : {}), members: s.members });
    }
    return k;
  }
}
