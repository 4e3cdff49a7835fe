// Class chains shared by every host that has the class (DESIGN §6.5, §7.4):
// like profile chains, they depend only on the ordered profile list and on
// which of its profiles exist, so they are rendered once and the same
// ChainDef objects reach every host. Kept while some host has the class.
import type { IpVersion } from "../model/index.js";
import type { CalcConfig } from "./calc-config.js";
import type { ChainDef } from "./desired-state.js";
import { renderClassChains } from "./render-classes.js";

export class ClassChainCache {
  private readonly entries = new Map<string, { users: number; exists: string; chains: Record<IpVersion, ChainDef[]> }>();

  constructor(private readonly cfg: CalcConfig, private readonly profileExists: (id: string) => boolean) {}

  /** A host has the class now. */
  acquire(cls: string): void {
    const e = this.entries.get(cls);
    if (e) e.users++;
    else this.entries.set(cls, { users: 1, exists: "", chains: { 4: [], 6: [] } });
  }

  /** A host no longer has the class; the last one frees its chains. */
  release(cls: string): void {
    const e = this.entries.get(cls);
    if (e && --e.users <= 0) this.entries.delete(cls);
  }

  /** The class's chains of one family, re-rendered when which of its profiles exist changed. */
  chains(cls: string, profileIds: readonly string[], family: IpVersion): ChainDef[] {
    const exists = profileIds.map((id) => (this.profileExists(id) ? "1" : "0")).join("");
    let e = this.entries.get(cls);
    // A host without a stored view (a snapshot's fresh one) renders without acquiring.
    if (!e) e = { users: 0, exists: "", chains: { 4: [], 6: [] } };
    if (e.exists !== exists || e.chains[family].length === 0) {
      if (e.exists !== exists) e.chains = { 4: [], 6: [] };
      e.exists = exists;
      e.chains[family] = renderClassChains(cls, { profileIds }, family, this.profileExists, this.cfg);
    }
    return e.chains[family];
  }
}
