// Names of everything Palisade programs (DESIGN §6.1). Kernel limits: chain
// names 28 characters, ipset names 31. Identifiers that are long or contain
// characters we do not want in a name are hashed, deterministically.
//
// Collision-freedom: a literal name is `<prefix>-<ident>`, a hashed one is
// `<prefix>_<hash>`; the character after the prefix tells them apart, so a
// literal identifier can never produce a hashed name.
import { shortHash } from "../util/hash.js";
import type { IpVersion } from "../model/index.js";

import { ADMIT_CHAIN, BASE_CHAINS, CHAIN_MAX, ENTRY_CHAINS, IPSET_MAX, OWNED_CHAIN_RE, OWNED_SET_RE } from "../contract/dataplane-names.js";

export { ADMIT_CHAIN, BASE_CHAINS, CHAIN_MAX, ENTRY_CHAINS, IPSET_MAX, OWNED_CHAIN_RE, OWNED_SET_RE };
const SAFE = /^[A-Za-z0-9_.-]+$/;

function name(prefix: string, ident: string, max: number): string {
  const literal = `${prefix}-${ident}`;
  if (literal.length <= max && SAFE.test(ident)) return literal;
  return `${prefix}_${shortHash(ident, Math.min(20, max - prefix.length - 1))}`;
}

export const profileInboundChain = (id: string) => name("pal-pi", id, CHAIN_MAX);
export const profileOutboundChain = (id: string) => name("pal-po", id, CHAIN_MAX);
/**
 * Mirrored profile chains (DESIGN §6.5, "Reply-direction re-check chains"):
 * the profile's rules seen from the reply side. `pal-qi`/`pal-qo` share no
 * prefix with any other chain family (`pal-pi`, `pal-po`, …).
 */
export const mirroredInboundChain = (id: string) => name("pal-qi", id, CHAIN_MAX);
export const mirroredOutboundChain = (id: string) => name("pal-qo", id, CHAIN_MAX);
export const tagSet = (tag: string, family: IpVersion) => name(`pal${family}t`, tag, IPSET_MAX);

// ---- set-based layout (DESIGN §6.5): endpoints are set members; an
// endpoint's ordered profile list is one member per position, in the set of
// (position, profile). Names derive from the profile id and the position, so
// they do not depend on the order in which endpoints arrived, and a host's
// chains grow with the profiles in use, not with their combinations.

/** A profile's short key in position set and tree names: 16 base32 characters of SHA-256 of its id. */
export const profileKey = (profileId: string) => shortHash(profileId, 16);
/**
 * The workload chains (one per host and family, DESIGN §6.5): where the
 * roots send an active endpoint's packet. `pal-cf` (from the workload: MAC
 * check, then its outbound rules, position by position), `pal-ct` (to it:
 * inbound), and their mirrored twins `pal-rf`/`pal-rt`, where a packet
 * carrying REPLY_CHECK_MARK is diverted (a reply leaving the original
 * receiver runs the mirrored inbound chains; one reaching the original
 * sender, the mirrored outbound ones).
 */
export const WORKLOAD_CHAINS = { from: "pal-cf", to: "pal-ct", replyFrom: "pal-rf", replyTo: "pal-rt" } as const;
export type WorkloadVariant = keyof typeof WORKLOAD_CHAINS;
/** Position k's dispatch chain of one variant (its tree's root), or a node of that tree (keyed by profile-key prefix). */
export const positionChain = (variant: WorkloadVariant, k: number, prefix = "") => `${WORKLOAD_CHAINS[variant]}${k}${prefix ? `-${prefix}` : ""}`;
/** hash:net,iface: (address, interface) of the host's active endpoints whose profile at position k is this (existing) profile. */
export const positionSet = (k: number, key: string, family: IpVersion) => `pal${family}ip${k}_${key}`;
/** The union of the position sets under a node of position k's tree. */
export const positionNodeSet = (k: number, prefix: string, family: IpVersion) => `pal${family}ipn${k}-${prefix}`;
/** hash:net,iface: active endpoints whose profile at position k does not exist (denied there: "missing-profile"). */
export const missingSet = (k: number, family: IpVersion) => `pal${family}ix${k}`;
/**
 * hash:net,iface: (address, interface) of the host's active endpoints, for
 * both directions (`src,src` from the workload, `dst,dst` to it). Keyed by
 * address: the kernel hashes only the net part, so `0/0,<iface>` members
 * would all share one bucket (at most 64 fit).
 */
export const activeSet = (family: IpVersion) => `pal${family}i-active`;
/** hash:net,iface: (address, interface) of inactive endpoints. */
export const inactiveSet = (family: IpVersion) => `pal${family}i-inactive`;
/** The MAC check (DESIGN §6.5): its chain, called from the from-workload root. */
export const MAC_ROOT = "pal-from-wl-mac";
/** The interface tree for MACs that no MAC set can hold: root and nodes keyed by interface-name prefix. */
export const MAC_TREE_ROOT = "pal-from-wl-mact";
export const macNode = (prefix: string) => name("pal-fm", prefix, CHAIN_MAX);
/**
 * A network's short name in set and chain names (DESIGN §6.5): 12 base32
 * characters of SHA-256 of its id. Two ids hashing alike would share MAC
 * sets, where disagreeing claims get no member: fail closed, never open.
 */
export const networkHash = (network: string) => shortHash(network, 12);
/**
 * bitmap:ip,mac over the /16 of an IPv4 address: `<address>,<MAC>` claimed by
 * active endpoints of one network. The default network (no `network`) keeps
 * the names of hosts before networks: `pal4m-<a>-<b>`; a network's are
 * `pal4m_<hash>-<a>-<b>`.
 */
export const macSet = (ipv4: string, network?: string) => {
  const [a, b] = ipv4.split(".");
  return `pal4m${network === undefined ? "" : `_${networkHash(network)}`}-${Number(a)}-${Number(b)}`;
};
/** hash:net,iface: (IPv4 address, interface) of endpoints without a MAC: they skip the MAC sets. */
export const noMacSet = "pal4i-nomac";
/** list:set of the host's MAC sets of the default network: one rule checks them all, so a new /16 is set members only. */
export { MAC_LIST_SET as macListSet } from "../contract/dataplane-names.js";
/** list:set of one network's MAC sets. */
export const networkMacListSet = (network: string) => `pal4mac_${networkHash(network)}`;
/** hash:net,iface: (address, interface) whose MAC a network's MAC sets check: the lookup that picks the network. */
export const networkScopeSet = (network: string) => `pal4iw_${networkHash(network)}`;
/** The chain that checks a network's MAC sets. */
export const networkMacChain = (network: string) => `pal-fmw_${networkHash(network)}`;
/**
 * An endpoint whose MACs no MAC set can hold (a CIDR pair with a MAC, an
 * address allowed with two MACs): its (net, interface) pairs, IPv4, and its
 * chain of (source, MAC) rules, both families; keyed by interface name.
 */
export const endpointMacSet = (iface: string) => `pal4ie-${iface}`;
export const endpointMacChain = (iface: string) => `pal-fme-${iface}`;
/** Nodes of the IPv4 MAC scope tree (networks and endpoint leaves, DESIGN §6.5): chain and union set. */
export const macScopeNode = (prefix: string) => name("pal-fmn", prefix, CHAIN_MAX);
export const macScopeNodeSet = (prefix: string) => name("pal4imn", prefix, IPSET_MAX);
