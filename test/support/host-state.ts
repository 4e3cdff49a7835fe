// A per-host model of what a driver would hold after applying the updates
// the calculation graph emitted, plus checks of the sync protocol's order
// contract (DESIGN §5.7) while applying them.
import { CalcGraph, type CalcSink } from "../../services/calc/calc-graph.js";
import type { ChainDef, HostUpdate } from "../../services/calc/desired-state.js";

export interface PlainHostState {
  sets: Record<string, { family: number; members: string[] }>;
  chains: Record<string, string[]>;
  endpoints: Record<string, string>;
}

const SET_REF = /--match-set (\S+) (?:src|dst)/g;
const CHAIN_REF = /-[jg] (pal-\S+)/g;

/**
 * Chains that come in pairs (DESIGN §6.5, "Reply-direction re-check
 * chains"): a profile's chain and its mirrored chain, a workload or position
 * chain and its mirrored twin. One without its twin on a host is a rendering or
 * removal bug.
 */
const TWINS: [RegExp, string][] = [
  [/^pal-pi([-_])/, "pal-qi"], [/^pal-qi([-_])/, "pal-pi"], [/^pal-po([-_])/, "pal-qo"], [/^pal-qo([-_])/, "pal-po"],
  [/^pal-cf()(?=\d|$)/, "pal-rf"], [/^pal-rf()(?=\d|$)/, "pal-cf"], [/^pal-ct()(?=\d|$)/, "pal-rt"], [/^pal-rt()(?=\d|$)/, "pal-ct"],
];
export function twinOf(name: string): string | undefined {
  for (const [re, other] of TWINS) {
    const m = re.exec(name);
    if (m) return `${other}${m[1] ?? "_"}${name.slice(m[0].length)}`;
  }
  return undefined;
}

function setRefs(rules: readonly string[]): string[] {
  return rules.flatMap((r) => [...r.matchAll(SET_REF)].map((m) => m[1]!));
}
function chainRefs(rules: readonly string[]): string[] {
  return rules.flatMap((r) => [...r.matchAll(CHAIN_REF)].map((m) => m[1]!));
}

export class HostState {
  readonly sets = new Map<string, { family: number; members: Set<string> }>();
  /** "family:name" -> rules */
  readonly chains = new Map<string, readonly string[]>();
  readonly endpoints = new Map<string, string>();
  /** Order-contract violations seen while applying. */
  readonly violations: string[] = [];
  /** Removals of things this host never had (harmless, but counted). */
  spuriousRemovals = 0;
  batches = 0;

  apply(updates: readonly HostUpdate[]): void {
    this.batches++;
    for (const u of updates) {
      switch (u.type) {
        case "ipset-update":
          this.sets.set(u.name, { family: u.family, members: new Set(u.members) });
          break;
        case "ipset-delta": {
          const s = this.sets.get(u.name);
          if (!s) {
            this.violations.push(`delta for unknown set ${u.name}`);
            break;
          }
          for (const m of u.removed) s.members.delete(m);
          for (const m of u.added) s.members.add(m);
          break;
        }
        case "ipset-remove": {
          if (!this.sets.delete(u.name)) this.spuriousRemovals++;
          for (const [key, rules] of this.chains) {
            if (setRefs(rules).includes(u.name)) this.violations.push(`set ${u.name} removed while chain ${key} references it`);
          }
          break;
        }
        case "chain-update":
          for (const s of setRefs(u.chain.rules)) {
            const have = this.sets.get(s);
            if (!have) this.violations.push(`chain ${u.chain.name} references set ${s} before it exists`);
            else if (have.family !== u.chain.family) this.violations.push(`chain ${u.chain.name} references set ${s} of the other family`);
          }
          this.chains.set(`${u.chain.family}:${u.chain.name}`, u.chain.rules);
          break;
        case "chain-remove":
          if (!this.chains.delete(`${u.family}:${u.name}`)) this.spuriousRemovals++;
          break;
        case "endpoint-update":
          this.endpoints.set(u.key, u.interfaceName);
          break;
        case "endpoint-remove":
          if (!this.endpoints.delete(u.key)) this.spuriousRemovals++;
          break;
      }
    }
    // After a complete batch, nothing may dangle: every jump target and every
    // referenced set exists (in the chain's family).
    for (const [key, rules] of this.chains) {
      const family = key.slice(0, key.indexOf(":"));
      for (const c of chainRefs(rules)) {
        if (!this.chains.has(`${family}:${c}`)) this.violations.push(`chain ${key} jumps to missing ${c}`);
      }
      for (const s of setRefs(rules)) if (!this.sets.has(s)) this.violations.push(`chain ${key} references missing set ${s}`);
      const twin = twinOf(key.slice(key.indexOf(":") + 1));
      if (twin !== undefined && !this.chains.has(`${family}:${twin}`)) this.violations.push(`chain ${key} without its twin ${twin}`);
    }
  }

  plain(): PlainHostState {
    const sets: PlainHostState["sets"] = {};
    for (const [n, s] of [...this.sets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) sets[n] = { family: s.family, members: [...s.members].sort() };
    const chains: PlainHostState["chains"] = {};
    for (const [k, r] of [...this.chains].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) chains[k] = [...r];
    const endpoints: PlainHostState["endpoints"] = {};
    for (const [k, v] of [...this.endpoints].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) endpoints[k] = v;
    return { sets, chains, endpoints };
  }

  chain(family: 4 | 6, name: string): readonly string[] | undefined {
    return this.chains.get(`${family}:${name}`);
  }
}

/** A sink that records every call and keeps a HostState per host. */
export class RecordingSink implements CalcSink {
  readonly hosts = new Map<string, HostState>();
  readonly calls: { host: string; revision: number; updates: HostUpdate[] }[] = [];

  onHostUpdates(host: string, revision: number, updates: HostUpdate[]): void {
    this.calls.push({ host, revision, updates });
    this.state(host).apply(updates);
  }

  state(host: string): HostState {
    let s = this.hosts.get(host);
    if (!s) this.hosts.set(host, (s = new HostState()));
    return s;
  }

  callsSince(i: number) {
    return this.calls.slice(i);
  }

  violations(): string[] {
    return [...this.hosts].flatMap(([h, s]) => s.violations.map((v) => `${h}: ${v}`));
  }
}

/** The state a driver would hold after applying only `graph.snapshot(host)`. */
export function snapshotState(graph: CalcGraph, host: string): HostState {
  const s = new HostState();
  s.apply(graph.snapshot(host).updates);
  return s;
}

export type { ChainDef };
