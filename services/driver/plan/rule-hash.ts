// Every rule Palisade writes carries a comment "pal:<hash>". The hash covers
// the chain name, the rule's position and its text, so comparing the hash
// lists of a chain tells whether the kernel holds exactly what we wrote,
// without having to normalise iptables-save's rendering of the rule.
//
// Hashing ~16k rules costs tens of milliseconds, so hashes are computed once
// per chain object: the driver's desired state keeps the objects of chains
// that did not change, and an incremental apply hashes only the new ones.
import { createHash } from "node:crypto";
import type { ChainDef } from "../../contract/host-update.js";

export const HASH_COMMENT_RE = /--comment "?pal:([0-9a-f]{16})"?/;

export function ruleHashes(chain: string, rules: readonly string[]): string[] {
  return rules.map((r, i) => createHash("sha256").update(`${chain}\u0000${i}\u0000${r}`).digest("hex").slice(0, 16));
}

const cache = new WeakMap<ChainDef, string[]>();

/** ruleHashes(c.name, c.rules), memoised per (immutable) chain object. */
export function chainHashes(c: ChainDef): string[] {
  let h = cache.get(c);
  if (!h) cache.set(c, (h = ruleHashes(c.name, c.rules)));
  return h;
}

export function hashComment(hash: string): string {
  return `-m comment --comment pal:${hash}`;
}
