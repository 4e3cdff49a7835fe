// Coalesces host updates by key: a later update of a key replaces or merges
// into the pending one, so pending state is bounded by the number of keys,
// not the number of changes. drain() returns updates in the documented
// flush order (DESIGN §5):
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
  | { kind: "delta"; family: IpVersion; added: Set<string>; removed: Set<string> }
  | { kind: "remove"; family: IpVersion };

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
        this.sets.set(`${u.family}:${u.name}`, { kind: "full", family: u.family, members: new Set(u.members) });
        this.weight += u.members.length;
        return;
      case "ipset-remove":
        this.sets.set(`${u.family}:${u.name}`, { kind: "remove", family: u.family });
        return;
      case "ipset-delta": {
        const key = `${u.family}:${u.name}`;
        const cur = this.sets.get(key);
        this.weight += u.added.length + u.removed.length;
        if (!cur) {
          this.sets.set(key, { kind: "delta", family: u.family, added: new Set(u.added), removed: new Set(u.removed) });
        } else if (cur.kind === "full") {
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
    const setUps: HostUpdate[] = [];
    const setRemoves: HostUpdate[] = [];
    for (const [key, s] of this.sets) {
      const name = key.slice(key.indexOf(":") + 1);
      if (s.kind === "full") setUps.push({ type: "ipset-update", name, family: s.family, members: [...s.members] });
      else if (s.kind === "delta") {
        if (s.added.size || s.removed.size) {
          setUps.push({ type: "ipset-delta", name, family: s.family, added: [...s.added], removed: [...s.removed] });
        }
      } else setRemoves.push({ type: "ipset-remove", name, family: s.family });
    }
    const chainUps: HostUpdate[] = [];
    const chainRemoves: HostUpdate[] = [];
    for (const c of this.chains.values()) (c.type === "chain-update" ? chainUps : chainRemoves).push(c);
    const out = [...setUps, ...chainUps, ...this.endpoints.values(), ...chainRemoves, ...setRemoves];
    this.clear();
    return out;
  }
}
