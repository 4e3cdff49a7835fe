// Random desired dataplanes for the seeded histories (driver-incremental,
// plan): every set type the layouts use — hash:net tag sets, hash:net,iface
// classification sets, bitmap:ip,mac MAC sets and the list:set holding them —
// in both families, and chains that match against those sets and jump or go
// to each other. Each state is one the controller could send and the kernel
// accepts (every referenced set and chain exists, in the chain's family; a
// list holds only existing MAC sets; one MAC per address), so a refusal by
// the fake kernel (support/fake-kernel.ts) is the planner's fault. Steps
// between states are the updates the controller sends (DESIGN §5.7).
import { chainKey, type ChainDef, type HostUpdate } from "../../services/contract/host-update.js";
import { setTypeOf } from "../../services/contract/dataplane-names.js";
import type { DesiredSet } from "../../services/driver/sync/desired-state.js";
import type { IpVersion } from "../../services/model/index.js";
import type { FakeKernel } from "./fake-kernel.js";
import { pick, randInt } from "./prng.js";

export const ENTRY = ["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"];
/** Policy chains, by index: chain i jumps only to chains j > i (the kernel refuses loops). */
const POLICY = Array.from({ length: 5 }, (_, i) => `pal-pi-r${i}`);

const range = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));
const v4 = range(8, (i) => `198.18.0.${i + 1}`);
const v6 = range(6, (i) => `2001:db8::${i + 1}`);
const MACS = range(3, (i) => `02:00:00:00:00:0${i + 1}`);
const MAC_SETS = ["pal4m-198-18", "pal4m-198-19"];

/** Every set a history may hold, with its family and the members it may hold. */
const SETS: Record<string, { family: IpVersion; pool: string[] }> = {
  "pal4t-r0": { family: 4, pool: [...v4, "198.18.1.0/24", "198.18.2.0/24"] },
  "pal4t-r1": { family: 4, pool: [...v4, "198.18.1.0/24"] },
  "pal6t-r0": { family: 6, pool: [...v6, "2001:db8:1::/64"] },
  "pal4i-inactive": { family: 4, pool: v4.slice(0, 4).map((a, i) => `${a},tap${i}`) },
  "pal4ic_r0": { family: 4, pool: [...v4.map((a, i) => `${a},tap${i % 4}`), "0.0.0.0/0,tap9"] },
  "pal4ic_r1": { family: 4, pool: v4.map((a, i) => `${a},tap${(i + 1) % 4}`) },
  "pal6ic_r0": { family: 6, pool: v6.map((a, i) => `${a},tap${i % 3}`) },
  // bitmap:ip,mac: members are drawn per address (one MAC each), see members().
  "pal4m-198-18": { family: 4, pool: range(6, (i) => `198.18.0.${i + 1}`) },
  "pal4m-198-19": { family: 4, pool: range(6, (i) => `198.19.0.${i + 1}`) },
  pal4mac: { family: 4, pool: MAC_SETS },
};
const CLASSIFICATION = Object.keys(SETS).filter((n) => setTypeOf(n) !== "hash:net");

export interface World {
  /** By chainKey(). */
  chains: Map<string, ChainDef>;
  sets: Map<string, DesiredSet>;
}

const chain = (family: IpVersion, name: string, rules: string[]): ChainDef => ({ table: "filter", family, name, rules });

export function emptyWorld(families: readonly IpVersion[]): World {
  const chains = new Map<string, ChainDef>();
  for (const f of families) for (const n of ENTRY) chains.set(chainKey(f, n), chain(f, n, ["-j DROP"]));
  return { chains, sets: new Map() };
}

function copy(w: World): World {
  return { chains: new Map(w.chains), sets: new Map([...w.sets].map(([n, s]) => [n, { family: s.family, members: new Set(s.members) }])) };
}

function members(rnd: () => number, name: string, w: World): Set<string> {
  const { pool } = SETS[name]!;
  if (setTypeOf(name) === "list:set") return new Set(pool.filter((m) => w.sets.has(m) && rnd() < 0.7));
  if (setTypeOf(name) === "bitmap:ip,mac") return new Set(pool.filter(() => rnd() < 0.5).map((a) => `${a},${pick(rnd, MACS)}`));
  return new Set(pool.filter(() => rnd() < 0.4));
}

/** A rule of chain `name` (policy index `at`, -1 for entry chains) in family f, against what `w` holds. */
function rule(rnd: () => number, f: IpVersion, at: number, w: World): string {
  const sets = [...w.sets.keys()].filter((n) => setTypeOf(n) === "list:set" || SETS[n]!.family === f);
  const targets = POLICY.filter((n, j) => j > at && w.chains.has(chainKey(f, n)));
  switch (randInt(rnd, 4)) {
    case 0: case 1: {
      const s = pick(rnd, sets);
      if (!s) break;
      const dir = pick(rnd, ["src", "dst"]);
      const dims = setTypeOf(s) === "hash:net" ? dir : `${dir},${dir}`;
      return `-m set ${rnd() < 0.3 ? "! " : ""}--match-set ${s} ${dims} -j ${pick(rnd, ["ACCEPT", "DROP", "RETURN"])}`;
    }
    case 2: {
      const t = pick(rnd, targets);
      if (t) return `-${pick(rnd, ["j", "g"])} ${t}`;
      break;
    }
  }
  return `-p tcp --dport ${randInt(rnd, 4)} -j ${pick(rnd, ["ACCEPT", "DROP", "RETURN"])}`;
}

function rules(rnd: () => number, f: IpVersion, at: number, w: World): string[] {
  return Array.from({ length: 1 + randInt(rnd, 3) }, () => rule(rnd, f, at, w));
}

/** Drops what would dangle: rules matching missing sets or jumping to missing chains, list members that are gone. */
function fix(w: World): void {
  const list = w.sets.get("pal4mac");
  if (list) for (const m of [...list.members]) if (!w.sets.has(m)) list.members.delete(m);
  for (const [k, c] of w.chains) {
    const ok = (r: string) => {
      const set = /--match-set (\S+) /.exec(r)?.[1];
      const target = /-[jg] (pal-\S+)/.exec(r)?.[1];
      return (set === undefined || w.sets.has(set)) && (target === undefined || w.chains.has(chainKey(c.family, target)));
    };
    if (!c.rules.every(ok)) {
      const kept = c.rules.filter(ok);
      w.chains.set(k, chain(c.family, c.name, kept.length ? kept : ["-j DROP"]));
    }
  }
}

/** The next state: one to three random changes, then nothing left dangling. */
export function mutate(rnd: () => number, from: World, families: readonly IpVersion[]): World {
  const w = copy(from);
  const names = Object.keys(SETS).filter((n) => families.includes(SETS[n]!.family));
  for (let n = 1 + randInt(rnd, 3); n > 0; n--) {
    const f = pick(rnd, families);
    switch (randInt(rnd, 8)) {
      case 0: case 1: { // members of one set change (a MAC set: an address gains, loses or changes its MAC)
        const name = pick(rnd, [...w.sets.keys()]);
        if (!name) break;
        const s = w.sets.get(name)!;
        const fresh = members(rnd, name, w);
        for (const m of [...s.members]) if (rnd() < 0.3) s.members.delete(m);
        for (const m of fresh) {
          if (rnd() >= 0.4) continue;
          if (setTypeOf(name) === "bitmap:ip,mac") for (const old of [...s.members]) if (old.split(",")[0] === m.split(",")[0]) s.members.delete(old);
          s.members.add(m);
        }
        break;
      }
      case 2: { // a set appears
        const name = pick(rnd, names.filter((x) => !w.sets.has(x)));
        if (name) w.sets.set(name, { family: SETS[name]!.family, members: members(rnd, name, w) });
        break;
      }
      case 3: { // a set goes (its references go with it)
        const name = pick(rnd, [...w.sets.keys()]);
        if (name) w.sets.delete(name);
        break;
      }
      case 4: case 5: { // a chain is (re)written
        const at = randInt(rnd, POLICY.length + 1) - 1;
        const name = at < 0 ? pick(rnd, ENTRY) : POLICY[at]!;
        w.chains.set(chainKey(f, name), chain(f, name, rules(rnd, f, at, w)));
        break;
      }
      case 6: { // a policy chain goes (the jumps to it go with it)
        const name = pick(rnd, POLICY);
        w.chains.delete(chainKey(f, name));
        break;
      }
      default: { // a layout switch: every classification, MAC and list set goes, or all of them appear, used by the entry chains
        if (CLASSIFICATION.some((x) => w.sets.has(x))) for (const x of CLASSIFICATION) w.sets.delete(x);
        else {
          for (const x of CLASSIFICATION.filter((y) => families.includes(SETS[y]!.family))) w.sets.set(x, { family: SETS[x]!.family, members: new Set() });
          for (const x of CLASSIFICATION.filter((y) => w.sets.has(y))) w.sets.get(x)!.members = members(rnd, x, w);
          for (const g of families) {
            const uses = CLASSIFICATION.filter((x) => w.sets.has(x) && (setTypeOf(x) === "list:set" || SETS[x]!.family === g));
            for (const e of ENTRY) w.chains.set(chainKey(g, e), chain(g, e, [...uses.map((x) => `-m set --match-set ${x} src,src -j RETURN`), "-j DROP"]));
          }
        }
      }
    }
  }
  fix(w);
  return w;
}

/** The updates that take a driver from `a` to `b`, as the controller orders them (DESIGN §5.7). */
export function updatesBetween(rnd: () => number, a: World, b: World): HostUpdate[] {
  const sets: HostUpdate[] = [];
  const removals: HostUpdate[] = [];
  for (const [name, s] of b.sets) {
    const was = a.sets.get(name);
    if (!was || rnd() < 0.3) { sets.push({ type: "ipset-update", name, family: s.family, members: [...s.members] }); continue; }
    const added = [...s.members].filter((m) => !was.members.has(m));
    const removed = [...was.members].filter((m) => !s.members.has(m));
    if (added.length || removed.length) sets.push({ type: "ipset-delta", name, family: s.family, added, removed });
    // Sometimes a member comes and goes again before the apply: nothing to write.
    if (setTypeOf(name) === "hash:net" && rnd() < 0.2) {
      const extra = pick(rnd, SETS[name]!.pool.filter((m) => !s.members.has(m)));
      if (extra) sets.push({ type: "ipset-delta", name, family: s.family, added: [extra], removed: [] }, { type: "ipset-delta", name, family: s.family, added: [], removed: [extra] });
    }
  }
  for (const [name, s] of a.sets) if (!b.sets.has(name)) removals.push({ type: "ipset-remove", name, family: s.family });
  const chains: HostUpdate[] = [];
  for (const [k, c] of b.chains) if (a.chains.get(k) !== c) chains.push({ type: "chain-update", chain: c });
  const chainRemovals: HostUpdate[] = [];
  for (const [k, c] of a.chains) if (!b.chains.has(k)) chainRemovals.push({ type: "chain-remove", table: "filter", family: c.family, name: c.name });
  return [...sets, ...chains, ...chainRemovals, ...removals];
}

/**
 * Someone else edits the kernel, through the kernel's own commands (so only
 * in ways the kernel accepts; a refused edit changes what the kernel says).
 */
export async function tamper(rnd: () => number, k: FakeKernel, families: readonly IpVersion[]): Promise<void> {
  const f = pick(rnd, families);
  const ipt = (...lines: string[]) => k.run(f === 4 ? "iptables-nft-restore" : "ip6tables-nft-restore", ["--noflush"], ["*filter", ...lines, "COMMIT", ""].join("\n"));
  const ipset = (...lines: string[]) => k.run("ipset", ["restore"], `${lines.join("\n")}\n`);
  const ours = [...k.tables[f].keys()].filter((n) => n.startsWith("pal-"));
  const sets = [...k.sets.keys()];
  const attempt = async () => {
    switch (randInt(rnd, 8)) {
      case 0: { const n = pick(rnd, ours); if (n) await ipt(`:${n} - [0:0]`); break; } // a chain flushed
      case 1: { const n = pick(rnd, ours); if (n) await ipt(`-I ${n} 1 -j ACCEPT`); break; } // a foreign rule atop ours
      case 2: await ipt("-D FORWARD 1"); break; // the hook deleted
      case 3: { // a stray chain of ours, perhaps matching one of our sets
        const s = pick(rnd, sets.filter((n) => setTypeOf(n) === "list:set" || (SETS[n]?.family ?? 4) === f));
        await ipt(":pal-stray - [0:0]", s && rnd() < 0.7 ? `-A pal-stray -m set --match-set ${s} src -j ACCEPT` : "-A pal-stray -j ACCEPT");
        break;
      }
      case 4: { // a member added
        const s = pick(rnd, sets.filter((n) => SETS[n]));
        if (s) await ipset(`add ${s} ${setTypeOf(s) === "bitmap:ip,mac" ? `${pick(rnd, SETS[s]!.pool)},${pick(rnd, MACS)}` : pick(rnd, SETS[s]!.pool)} -exist`);
        break;
      }
      case 5: { const s = pick(rnd, sets); if (s) await ipset(`flush ${s}`); break; } // a set emptied
      case 6: { // a stray set, perhaps held by our list
        await ipset("create pal4t-stray hash:net family inet maxelem 1048576 -exist");
        if (k.sets.has("pal4mac") && rnd() < 0.5) await ipset("add pal4mac pal4t-stray -exist");
        break;
      }
      default: { // a chain of ours deleted outright, when the kernel lets it
        const n = pick(rnd, ours);
        if (n) await ipt(`:${n} - [0:0]`, `-X ${n}`);
      }
    }
  };
  await attempt().catch(() => undefined);
}
