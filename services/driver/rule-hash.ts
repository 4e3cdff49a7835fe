// Every rule Palisade writes carries a comment "pal:<hash>". The hash covers
// the chain name, the rule's position and its text, so comparing the hash
// lists of a chain tells whether the kernel holds exactly what we wrote,
// without having to normalise iptables-save's rendering of the rule.
import { shortHash } from "../common/hash.js";

export const HASH_COMMENT_RE = /--comment "?pal:([a-z2-7]{16})"?/;

export function ruleHashes(chain: string, rules: readonly string[]): string[] {
  return rules.map((r, i) => shortHash(`${chain}\u0000${i}\u0000${r}`, 16));
}

export function hashComment(hash: string): string {
  return `-m comment --comment pal:${hash}`;
}
