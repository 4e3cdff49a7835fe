// Names of everything Palisade programs (DESIGN §6.1). Kernel limits: chain
// names 28 characters, ipset names 31. Identifiers that are long or contain
// characters we do not want in a name are hashed, deterministically.
//
// Collision-freedom: a literal name is `<prefix>-<ident>`, a hashed one is
// `<prefix>_<hash>`; the character after the prefix tells them apart, so a
// literal identifier can never produce a hashed name.
import { shortHash } from "../common/hash.js";
import type { IpVersion } from "../model/index.js";

export const CHAIN_MAX = 28;
export const IPSET_MAX = 31;
const SAFE = /^[A-Za-z0-9_.-]+$/;

function name(prefix: string, ident: string, max: number): string {
  const literal = `${prefix}-${ident}`;
  if (literal.length <= max && SAFE.test(ident)) return literal;
  return `${prefix}_${shortHash(ident, Math.min(20, max - prefix.length - 1))}`;
}

/** Chains the driver owns: hooked from the built-in chains. */
export const BASE_CHAINS = { forward: "pal-FORWARD", input: "pal-INPUT" } as const;
/** Entry chains the controller owns and the driver's base chains jump to. */
export const ENTRY_CHAINS = {
  fromWorkload: "pal-from-wl-dispatch",
  toWorkload: "pal-to-wl-dispatch",
  workloadToHost: "pal-wl-to-host",
} as const;

export const profileInboundChain = (id: string) => name("pal-pi", id, CHAIN_MAX);
export const profileOutboundChain = (id: string) => name("pal-po", id, CHAIN_MAX);
/** Interface names are at most 15 safe characters, so these never hash. */
export const toWorkloadChain = (iface: string) => name("pal-tw", iface, CHAIN_MAX);
export const fromWorkloadChain = (iface: string) => name("pal-fw", iface, CHAIN_MAX);
export const fromDispatchNode = (prefix: string) => name("pal-fd", prefix, CHAIN_MAX);
export const toDispatchNode = (prefix: string) => name("pal-td", prefix, CHAIN_MAX);
export const tagSet = (tag: string, family: IpVersion) => name(`pal${family}t`, tag, IPSET_MAX);

/** Everything Palisade owns matches these; the driver touches nothing else. */
export const OWNED_CHAIN_RE = /^pal-[A-Za-z0-9_.-]{1,24}$/;
export const OWNED_SET_RE = /^pal[A-Za-z0-9_.-]{1,28}$/;
