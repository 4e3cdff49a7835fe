// The incremental planner (DESIGN §6.7): what changed since the last
// successful apply -> the batches to write, read from the desired state and
// from what the driver last programmed (the drift reference), never from
// the kernel. Pure, like planApply, and proportional to the change: it
// looks up only the chains and sets the change names, and only the members
// it names (a set replaced or removed wholesale is compared in full, which
// costs what the update that replaced it did).
//
// Valid only while the kernel holds exactly the reference (the dataplane's
// "clean" state: after a successful apply that removed unwanted objects,
// or a read-back that found no drift); everything else plans in full.
//
// Same flush order as planApply (DESIGN §5.7): stage 0 empties chains that
// reference a set to be re-created; stage 1 creates sets and adds/deletes
// members; stage 2 rewrites and removes chains; stage 3 destroys sets.
import { EMPTIED_BEFORE_DESTROY_RE } from "../../contract/dataplane-names.js";
import type { ChainDef } from "../../contract/host-update.js";
import type { IpVersion } from "../../model/index.js";
import type { DesiredChanges, DesiredSet } from "../sync/desired-state.js";
import type { Table } from "../../contract/host-update.js";
import { TABLES } from "../kernel/kernel-state.js";
import { chainLines, destroyLines, emptyToDrop, orderSetLines, setCreate, tableSection, type Plan, type PlanInput } from "./plan.js";
import { chainHashes } from "./rule-hash.js";

/** One change to the drift reference, applied once the plan's writes succeeded. */
export type ReferenceEdit =
  | { op: "chain"; key: string; chain: ChainDef | undefined }
  /** A set created or re-created (members copied at plan time), or removed. */
  | { op: "set"; name: string; set: DesiredSet | undefined }
  | { op: "member"; name: string; member: string; present: boolean };

export interface ChangePlan {
  plan: Plan;
  /** What the reference becomes after the plan succeeded, as edits (O(change)). */
  edits: ReferenceEdit[];
}

/** The reference as the planner reads it: chains by chainKey(), sets by name. */
export interface Reference {
  chains: ReadonlyMap<string, ChainDef>;
  sets: ReadonlyMap<string, DesiredSet>;
}

function sameHashes(a: ChainDef, b: ChainDef): boolean {
  if (a === b) return true;
  const x = chainHashes(a);
  const y = chainHashes(b);
  return x.length === y.length && x.every((h, i) => h === y[i]);
}

/** Chains of the reference whose rules match against `set` (the rare re-create path only). */
function referencingChains(ref: Reference, set: string, families: readonly IpVersion[]): string[] {
  const needle = `--match-set ${set} `;
  const out: string[] = [];
  for (const [k, c] of ref.chains) {
    if (families.includes(c.family) && c.table === "filter" && c.rules.some((r) => `${r} `.includes(needle))) out.push(k);
  }
  return out;
}

export function planChanges(input: PlanInput, changes: DesiredChanges, ref: Reference): ChangePlan {
  const creates: string[] = [];
  const dels: string[] = [];
  const adds: string[] = [];
  const destroyed: string[] = [];
  const ipsetAfter: string[] = [];
  const edits: ReferenceEdit[] = [];
  const recreated: string[] = [];
  for (const [name, touched] of changes.sets) {
    const want = input.sets.get(name);
    const have = ref.sets.get(name);
    if (!want) {
      if (have) {
        destroyed.push(name);
        edits.push({ op: "set", name, set: undefined });
        if (EMPTIED_BEFORE_DESTROY_RE.test(name)) dels.push(`flush ${name}`);
      }
      continue;
    }
    if (!have || have.family !== want.family) {
      // New, or of another family (a set's type follows from its name): (re-)create and fill. Copied
      // now: the desired set may change while the apply runs.
      if (have) { recreated.push(name); creates.push(`destroy ${name}`, setCreate(name, want)); }
      else creates.push(`${setCreate(name, want)} -exist`);
      for (const m of want.members) adds.push(`add ${name} ${m} -exist`);
      edits.push({ op: "set", name, set: { ...want, members: new Set(want.members) } });
      continue;
    }
    const member = (m: string) => {
      const w = want.members.has(m);
      if (w === have.members.has(m)) return;
      (w ? adds : dels).push(`${w ? "add" : "del"} ${name} ${m} -exist`);
      edits.push({ op: "member", name, member: m, present: w });
    };
    if (touched === "all") {
      for (const m of want.members) member(m);
      for (const m of have.members) if (!want.members.has(m)) member(m);
    } else {
      for (const m of touched) member(m);
    }
  }

  const ipsetBefore = orderSetLines(creates, dels, adds);
  ipsetAfter.push(...destroyLines(destroyed));

  // Chains that reference a re-created set are emptied first (the kernel
  // refuses to destroy a referenced set) and rewritten in stage 2.
  const dirty = new Set(changes.chains);
  const restoreFirst: Record<IpVersion, string | undefined> = { 4: undefined, 6: undefined };
  const emptied = new Set<string>();
  for (const name of recreated) for (const k of referencingChains(ref, name, input.families)) { emptied.add(k); dirty.add(k); }
  for (const f of input.families) {
    restoreFirst[f] = emptyToDrop([...emptied].flatMap((k) => { const c = ref.chains.get(k)!; return c.family === f ? [c.name] : []; }));
  }

  // Per family and table: declarations, rules, removals.
  const lines = new Map<string, { declare: string[]; rules: string[]; removals: string[] }>();
  const at = (f: IpVersion, t: Table) => {
    let l = lines.get(`${f}:${t}`);
    if (!l) lines.set(`${f}:${t}`, (l = { declare: [], rules: [], removals: [] }));
    return l;
  };
  let chainsWritten = 0;
  let chainsRemoved = 0;
  for (const key of dirty) {
    const want = input.chains.get(key);
    const have = ref.chains.get(key);
    const c = want ?? have;
    if (!c || !input.families.includes(c.family)) continue;
    const out = at(c.family, c.table);
    if (want) {
      if (have && !emptied.has(key) && sameHashes(want, have)) continue;
      const l = chainLines(want);
      out.declare.push(l.declare);
      for (const r of l.rules) out.rules.push(r);
      chainsWritten++;
      edits.push({ op: "chain", key, chain: want });
    } else {
      out.declare.push(`:${c.name} - [0:0]`);
      out.removals.push(`-X ${c.name}`);
      chainsRemoved++;
      edits.push({ op: "chain", key, chain: undefined });
    }
  }
  const restore: Record<IpVersion, string | undefined> = { 4: undefined, 6: undefined };
  for (const f of input.families) {
    const text = TABLES.map((t) => { const l = lines.get(`${f}:${t}`); return l ? tableSection(t, [...l.declare, ...l.rules, ...l.removals]) : ""; }).join("");
    if (text) restore[f] = text;
  }
  return { plan: { restoreFirst, ipsetBefore, restore, ipsetAfter, chainsWritten, chainsRemoved }, edits };
}
