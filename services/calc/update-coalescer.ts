// Coalesces host updates by key: a later update of a key replaces or merges
// into the pending one, so pending state is bounded by the number of keys,
// not the number of changes. drain() returns updates in the documented
// flush order (DESIGN §5.7):
//
//   1. ipsets created / members changed   (before chains that use them)
//   2. chains created / changed
//   3. endpoint updates and removals
//   4. chains removed
//   5. ipsets removed                      (after chains that referenced them)
//
// Used twice: by the calculation graph to batch one revision's changes per
// host, and by each sync stream as its outbox towards a (maybe slow) driver.
import type { IpVersion } from "../model/index.js";
import type { HostUpdate } from "./desired-state.js";

type SetState =
  | { kind: "full"; family: IpVersion; members: Set<string> }
  /** A single delta, held by reference (fan-out shares one object across hosts). */
  | { kind: "delta-ref"; family: IpVersion; update: Extract<HostUpdate, { type: "ipset-delta" }> }
  | { kind: "delta"; family: IpVersion; added: Set<string>; removed: Set<string> }
  | { kind: "remove"; family: IpVersion }
  /** A full update, held by reference until something must merge into it. */
  | { kind: "full-ref"; family: IpVersion; update: Extract<HostUpdate, { type: "ipset-update" }> };

export class UpdateCoalescer {
  private sets = new Map<string, SetState>();
  private chains = new Map<string, HostUpdate>();
  private endpoints = new Map<string, HostUpdate>();
  /** Count of pending members/rules, a rough size for back-pressure decisions. */
  private weight = 0;

  get size(): number {
    return this.sets.size + this.chains.size + this.endpoints.size;
  }

  get pendingWeight(): number {
    return this.weight;
  }

  push(u: HostUpdate): void {
    switch (u.type) {
      case "ipset-update":
        this.sets.set(`${u.family}:${u.name}`, { kind: "full-ref", family: u.family, update: u });
        this.weight += u.members.length;
        return;
      case "ipset-remove":
        this.sets.set(`${u.family}:${u.name}`, { kind: "remove", family: u.family });
        return;
      case "ipset-delta": {
        const key = `${u.family}:${u.name}`;
        let cur = this.sets.get(key);
        this.weight += u.added.length + u.removed.length;
        if (!cur) {
          // Most keys see one delta per flush: keep it by reference, copy only to merge.
          this.sets.set(key, { kind: "delta-ref", family: u.family, update: u });
          return;
        }
        if (cur.kind === "delta-ref") {
          cur = { kind: "delta", family: cur.family, added: new Set(cur.update.added), removed: new Set(cur.update.removed) };
          this.sets.set(key, cur);
        } else if (cur.kind === "full-ref") {
          cur = { kind: "full", family: cur.family, members: new Set(cur.update.members) };
          this.sets.set(key, cur);
        }
        if (cur.kind === "full") {
          for (const m of u.removed) cur.members.delete(m);
          for (const m of u.added) cur.members.add(m);
        } else if (cur.kind === "delta") {
          // (B - r1 + a1) - r2 + a2  ==  B - (r1 ∪ r2 - a') + a',  a' = (a1 - r2) ∪ a2
          for (const m of u.removed) { cur.added.delete(m); cur.removed.add(m); }
          for (const m of u.added) { cur.removed.delete(m); cur.added.add(m); }
        }
        // A delta after a removal cannot happen (the set must be re-created
        // with a full update first); if it did, the removal stands.
        return;
      }
      case "chain-update":
        this.chains.set(`${u.chain.family}:${u.chain.name}`, u);
        this.weight += u.chain.rules.length;
        return;
      case "chain-remove":
        this.chains.set(`${u.family}:${u.name}`, u);
        return;
      case "endpoint-update":
      case "endpoint-remove":
        this.endpoints.set(u.key, u);
        return;
    }
  }

  pushAll(us: Iterable<HostUpdate>): void {
    for (const u of us) this.push(u);
  }

  clear(): void {
    this.sets.clear();
    this.chains.clear();
    this.endpoints.clear();
    this.weight = 0;
  }

  drain(): HostUpdate[] {
    // One output array, filled in the documented order.
    const out: HostUpdate[] = [];
    let removes = 0;
    for (const [key, s] of this.sets) {
      if (s.kind === "full-ref") out.push(s.update);
      else if (s.kind === "delta-ref") {
        if (s.update.added.length || s.update.removed.length) out.push(s.update);
      } else if (s.kind === "full") out.push({ type: "ipset-update", name: key.slice(key.indexOf(":") + 1), family: s.family, members: [...s.members] });
      else if (s.kind === "delta") {
        if (s.added.size || s.removed.size) out.push({ type: "ipset-delta", name: key.slice(key.indexOf(":") + 1), family: s.family, added: [...s.added], removed: [...s.removed] });
      } else removes++;
    }
    for (const c of this.chains.values()) if (c.type === "chain-update") out.push(c);
    for (const e of this.endpoints.values()) out.push(e);
    for (const c of this.chains.values()) if (c.type === "chain-remove") out.push(c);
    if (removes) {
      for (const [key, s] of this.sets) if (s.kind === "remove") out.push({ type: "ipset-remove", name: key.slice(key.indexOf(":") + 1), family: s.family });
    }
    this.clear();
    return out;
  }
}
