// The pure half of the driver: desired vs. kernel state -> the minimal
// batches to write. No processes, no clocks.
//
// Flush order (DESIGN §5.7, §6.7), one apply:
//   0. only when a set exists with the wrong type, family or range (a leftover):
//      iptables-restore empties the chains referencing it to a single DROP
//      (fail closed), because the kernel refuses to destroy, rename or swap
//      a referenced set into another type or family
//   1. ipset restore: such sets out of any list:set holding them, destroyed
//      and re-created; create new sets, add/delete members (deltas, not rewrites)
//   2. iptables-restore --noflush per family (one section per table: raw,
//      then filter): declare (= flush) and refill only the chains whose
//      rule hashes differ; fix hook positions; flush and delete chains no
//      longer wanted
//   3. ipset restore: destroy sets no longer wanted (no rule references them now)
import { chainKey, type ChainDef, type Table } from "../../contract/host-update.js";
import { EMPTIED_BEFORE_DESTROY_RE, macSetRange, setTypeOf } from "../../contract/dataplane-names.js";
import type { IpVersion } from "../../model/index.js";
import type { DesiredSet } from "../sync/desired-state.js";
import { rangeText, TABLE_HOOKS, TABLES, tableState, type KernelSet, type KernelState } from "../kernel/kernel-state.js";
import { chainHashes, hashComment, ruleHashes } from "./rule-hash.js";

export interface Plan {
  /** Stage 0 per family: chains referencing sets to re-create, emptied to DROP. */
  restoreFirst: Record<IpVersion, string | undefined>;
  ipsetBefore: string[];
  /** iptables-restore input per family, or undefined when nothing changes. */
  restore: Record<IpVersion, string | undefined>;
  ipsetAfter: string[];
  chainsWritten: number;
  chainsRemoved: number;
}

/**
 * Chains by chainKey(): what the planner reads of the desired chains. A Map
 * is one; the driver hands a layered view (base chains under the
 * controller's) so that no apply copies every chain (plan-input.ts).
 */
export interface ChainLookup {
  get(key: string): ChainDef | undefined;
  has(key: string): boolean;
  values(): Iterable<ChainDef>;
}

export interface PlanInput {
  chains: ChainLookup;
  sets: ReadonlyMap<string, DesiredSet>;
  families: IpVersion[];
  /** Remove pal chains/sets that are not desired (false before the first in-sync). */
  removeUnwanted: boolean;
}

export const SET_MAXELEM = 1048576;
/** A list:set holds the host's MAC sets: one per /16, at most 65,536. */
const SET_MAXELEM_LIST = 65536;

export function setCreate(name: string, set: Pick<DesiredSet, "family">): string {
  // A bitmap is sized by its range (and knows no family or maxelem).
  const range = macSetRange(name);
  if (range !== undefined) return `create ${name} ${setTypeOf(name)} range ${range}`;
  if (setTypeOf(name) === "list:set") return `create ${name} list:set size ${SET_MAXELEM_LIST}`;
  return `create ${name} ${setTypeOf(name)} family ${set.family === 4 ? "inet" : "inet6"} maxelem ${SET_MAXELEM}`;
}

/** Stage 0 for one family: the given chains (filter: the only table whose rules name sets) emptied to a single DROP. */
export function emptyToDrop(chains: Iterable<string>): string | undefined {
  const lines = [...chains].flatMap((c) => [`:${c} - [0:0]`, `-A ${c} ${hashComment(ruleHashes(c, ["-j DROP"])[0]!)} -j DROP`]);
  return lines.length ? ["*filter", ...lines, "COMMIT", ""].join("\n") : undefined;
}

/** The lines that (re)write one chain in a --noflush restore: declaring an existing chain flushes it. */
export function chainLines(c: ChainDef): { declare: string; rules: string[] } {
  const hashes = chainHashes(c);
  return { declare: `:${c.name} - [0:0]`, rules: c.rules.map((r, i) => `-A ${c.name} ${hashComment(hashes[i]!)} ${r}`) };
}

/** One table's section of a restore input; "" when it has no lines. */
export function tableSection(table: Table, lines: readonly string[]): string {
  return lines.length ? [`*${table}`, ...lines, "COMMIT", ""].join("\n") : "";
}

/**
 * Whether a table's hooks are wanted: filter's always (the driver's base
 * chains always exist); another table's only while its hook chain is
 * desired, so a planner input without one (a bench's, a test's) writes
 * nothing there.
 */
export function hooksWanted(desired: Pick<PlanInput, "chains">, table: Table, family: IpVersion, target: string): boolean {
  return table === "filter" || desired.chains.has(chainKey(family, target, table));
}

/** Whether a plan writes anything at all. */
export function planIsEmpty(plan: Plan, families: readonly IpVersion[]): boolean {
  return plan.ipsetBefore.length === 0 && plan.ipsetAfter.length === 0 && families.every((f) => plan.restoreFirst[f] === undefined && plan.restore[f] === undefined);
}

export function hookRule(builtin: string, table: Table = "filter"): { spec: string; hash: string } {
  const target = TABLE_HOOKS[table][builtin]!;
  const hash = ruleHashes(builtin, [`-j ${target}`])[0]!;
  return { spec: `${hashComment(hash)} -j ${target}`, hash };
}

/**
 * Stage 1's lines in the order the kernel needs: every set created before
 * any member is added (a list:set's members are sets), and a set's
 * deletions before its additions (a bitmap:ip,mac member is its address: a
 * `del` of the old MAC after an `add` of the new one would remove both).
 */
export function orderSetLines(creates: string[], dels: string[], adds: string[]): string[] {
  return [...creates, ...dels, ...adds];
}

/** Stage 3's destroys: list:sets first (a set listed in one cannot be destroyed; a destroyed list lets go of its members). */
export function destroyLines(names: Iterable<string>): string[] {
  const all = [...names];
  const first = all.filter((n) => setTypeOf(n) === "list:set");
  return [...first, ...all.filter((n) => setTypeOf(n) !== "list:set")].map((n) => `destroy ${n}`);
}

/** Whether a kernel set must be re-created to be `name`: another family, type, or (a bitmap) range. */
function misfit(name: string, want: Pick<DesiredSet, "family">, have: KernelSet): boolean {
  const range = macSetRange(name);
  return have.family !== want.family || have.type !== setTypeOf(name) || (range !== undefined && have.range !== undefined && have.range !== rangeText(range));
}

export function planApply(desired: PlanInput, kernel: KernelState): Plan {
  const ipsetBefore: string[] = [];
  const creates: string[] = [];
  const dels: string[] = [];
  const adds: string[] = [];
  const ipsetAfter: string[] = [];
  const recreate = new Set<string>();
  for (const [name, want] of desired.sets) {
    const have = kernel.sets.get(name);
    if (have && misfit(name, want, have)) recreate.add(name);
  }
  // A set a list:set holds cannot be destroyed: out of every list first
  // (and into the desired lists again below, as a new member).
  for (const [list, l] of kernel.sets) {
    if (l.type === "list:set") for (const m of l.members) if (recreate.has(m)) creates.push(`del ${list} ${m} -exist`);
  }
  for (const [name, want] of desired.sets) {
    const have = kernel.sets.get(name);
    if (recreate.has(name)) {
      // Wrong type, family or range: destroy and re-create (after stage 0
      // removed every rule referencing it), then fill.
      creates.push(`destroy ${name}`, `${setCreate(name, want)}`);
      for (const m of want.members) adds.push(`add ${name} ${m} -exist`);
      continue;
    }
    if (!have) creates.push(`${setCreate(name, want)} -exist`);
    // A re-created set was taken out of the lists holding it.
    const held = (m: string) => have !== undefined && have.members.has(m) && !(have.type === "list:set" && recreate.has(m));
    for (const m of want.members) if (!held(m)) adds.push(`add ${name} ${m} -exist`);
    if (have) for (const m of have.members) if (!want.members.has(m) && held(m)) dels.push(`del ${name} ${m} -exist`);
  }
  const unwanted = desired.removeUnwanted ? [...kernel.sets.keys()].filter((name) => !desired.sets.has(name)) : [];
  for (const name of unwanted) if (EMPTIED_BEFORE_DESTROY_RE.test(name)) dels.push(`flush ${name}`);
  ipsetBefore.push(...orderSetLines(creates, dels, adds));
  const restoreFirst: Record<IpVersion, string | undefined> = { 4: undefined, 6: undefined };
  const emptied: Record<IpVersion, Set<string>> = { 4: new Set(), 6: new Set() };
  for (const family of desired.families) {
    for (const name of recreate) for (const c of kernel.families[family].setRefs.get(name) ?? []) emptied[family].add(c);
    restoreFirst[family] = emptyToDrop(emptied[family]);
  }
  ipsetAfter.push(...destroyLines(unwanted));

  const restore: Record<IpVersion, string | undefined> = { 4: undefined, 6: undefined };
  let chainsWritten = 0;
  let chainsRemoved = 0;
  for (const family of desired.families) {
    let text = "";
    for (const table of TABLES) {
      const k = tableState(kernel, table, family);
      const declare: string[] = [];
      const rules: string[] = [];
      for (const c of desired.chains.values()) {
        if (c.family !== family || c.table !== table) continue;
        const hashes = chainHashes(c);
        const have = table === "filter" && emptied[family].has(c.name) ? undefined : k.chains.get(c.name);
        if (have && have.hashes.length === hashes.length && have.hashes.every((h, i) => h === hashes[i])) continue;
        const l = chainLines(c);
        declare.push(l.declare);
        for (const r of l.rules) rules.push(r);
        chainsWritten++;
      }
      // Hooks: exactly one jump, at the top of each built-in chain.
      const hooks: string[] = [];
      for (const [builtin, target] of Object.entries(TABLE_HOOKS[table])) {
        const { spec, hash } = hookRule(builtin, table);
        const positions = k.hookPositions.get(builtin) ?? [];
        const wanted = hooksWanted(desired, table, family, target);
        if (!wanted && !desired.removeUnwanted) continue;
        const ok = wanted ? positions.length === 1 && positions[0] === 1 && k.firstRuleHash.get(builtin) === hash : positions.length === 0;
        if (ok) continue;
        for (const p of [...positions].sort((a, b) => b - a)) hooks.push(`-D ${builtin} ${p}`);
        if (wanted) hooks.push(`-I ${builtin} 1 ${spec}`);
      }
      const removals: string[] = [];
      if (desired.removeUnwanted) {
        const gone = [...k.chains.keys()].filter((n) => !desired.chains.has(chainKey(family, n, table)));
        for (const n of gone) { declare.push(`:${n} - [0:0]`); removals.push(`-X ${n}`); }
        chainsRemoved += gone.length;
      }
      if (declare.length || hooks.length) text += tableSection(table, [...declare, ...rules, ...hooks, ...removals]);
    }
    if (text) restore[family] = text;
  }
  return { restoreFirst, ipsetBefore, restore, ipsetAfter, chainsWritten, chainsRemoved };
}

/** Removes everything Palisade owns (palisade-driver --cleanup). */
export function planCleanup(kernel: KernelState, families: IpVersion[]): Plan {
  const restore: Record<IpVersion, string | undefined> = { 4: undefined, 6: undefined };
  let chainsRemoved = 0;
  for (const family of families) {
    let text = "";
    for (const table of TABLES) {
      const k = tableState(kernel, table, family);
      const lines: string[] = [];
      for (const builtin of Object.keys(TABLE_HOOKS[table])) {
        for (const p of [...(k.hookPositions.get(builtin) ?? [])].sort((a, b) => b - a)) lines.push(`-D ${builtin} ${p}`);
      }
      const names = [...k.chains.keys()];
      for (const n of names) lines.push(`:${n} - [0:0]`);
      for (const n of names) lines.push(`-X ${n}`);
      chainsRemoved += names.length;
      text += tableSection(table, lines);
    }
    if (text) restore[family] = text;
  }
  return { restoreFirst: { 4: undefined, 6: undefined }, ipsetBefore: [], restore, ipsetAfter: destroyLines(kernel.sets.keys()), chainsWritten: 0, chainsRemoved };
}
