// What the calculation core emits for one host is the contract's
// HostUpdate (contract/host-update.ts); this file adds what only the core needs.
import { type ChainDef, type HostUpdate, chainKey } from "../contract/host-update.js";

export { type ChainDef, type HostUpdate, chainKey };

export function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}
