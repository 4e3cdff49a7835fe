// The naming rules controller and driver share (DESIGN §6.1): kernel limits,
// the chains the driver owns and the entry chains it jumps to, and what
// "ours" looks like — the driver touches nothing that does not match.
// How the controller derives names from identifiers is calc/names.ts.

export const CHAIN_MAX = 28;
export const IPSET_MAX = 31;

/** Chains the driver owns: hooked from the built-in chains. */
export const BASE_CHAINS = { forward: "pal-FORWARD", input: "pal-INPUT" } as const;
/** The driver's chain in the raw table: a conntrack zone per bridge (DESIGN §6.13). */
export const ZONE_CHAIN = "pal-PREROUTING";
/** Entry chains the controller owns and the driver's base chains jump to. */
export const ENTRY_CHAINS = {
  fromWorkload: "pal-from-wl-dispatch",
  toWorkload: "pal-to-wl-dispatch",
  workloadToHost: "pal-wl-to-host",
} as const;

/**
 * Revoked connections end (DESIGN §6.14). A packet of an established
 * connection whose policy may have changed since it was last judged is
 * judged again; a *reply-direction* packet is judged with the original
 * direction's rules mirrored. The driver sets this packet-mark bit before it
 * sends such a packet into the entry chains; the controller's workload
 * chains (`pal-cf`, `pal-ct`) start by diverting a packet carrying it to
 * their mirrored twins (the receiver's inbound rules, or the sender's
 * outbound rules, with source and destination swapped). Next to the accept
 * mark (0x1000000) and the log mark (0x2000000).
 */
export const REPLY_CHECK_MARK = 0x4000000;

/**
 * The driver's chain where every packet Palisade accepts is accepted
 * (DESIGN §6.14): it marks the connection judged in the current policy
 * epoch. The controller's workload-to-host "accept" goes to it too.
 */
export const ADMIT_CHAIN = "pal-ct-admit";

/** Everything Palisade owns matches these; the driver touches nothing else. */
export const OWNED_CHAIN_RE = /^pal-[A-Za-z0-9_.-]{1,24}$/;
export const OWNED_SET_RE = /^pal[A-Za-z0-9_.-]{1,28}$/;

/**
 * An ipset's type follows from its name (DESIGN §6.2), so the wire needs no
 * type field: `pal4i…`/`pal6i…` are the host's classification sets,
 * `hash:net,iface` (members `<net>,<interface>`); `pal4m-<a>-<b>` (the
 * default network) and `pal4m_<network>-<a>-<b>` (a network's, by the hash
 * of its id) are MAC sets, `bitmap:ip,mac` over the /16 `<a>.<b>.0.0/16`
 * (members `<address>,<MAC>`), and `pal4mac` / `pal4mac_<network>` the
 * `list:set`s of them; every other set of ours is `hash:net` (members `<net>`).
 */
export const IFACE_SET_RE = /^pal[46]i/;
export const MAC_SET_RE = /^pal4m(?:_[a-z2-7]{1,20})?-(\d{1,3})-(\d{1,3})$/;
/** `list:set` of the host's default-network MAC sets (members: their names), so one rule checks them all. */
export const MAC_LIST_SET = "pal4mac";
/** `list:set`s of MAC sets: the default network's, and one per network (DESIGN §6.5). */
export const MAC_LIST_SET_RE = /^pal4mac(?:_[a-z2-7]{1,20})?$/;
export type SetType = "hash:net" | "hash:net,iface" | "bitmap:ip,mac" | "list:set";
/**
 * Sets the driver empties in the ipset stage of the apply that destroys
 * them (DESIGN §6.5, "Mid-apply"): the position layout's sets, which say
 * which profile judges an endpoint at a position. Between the ipset stage
 * and the iptables stage the old chains still look them up; a member left
 * in a set on its way out would be judged by its old profile at one
 * position beside its new ones at others. Emptied, it finds no line there
 * and the position drops it (fail closed). Not every set: emptying a tag
 * set that a deny rule names would let through what the rule denies.
 */
export const EMPTIED_BEFORE_DESTROY_RE = /^pal[46]i(?:p\d+_|x\d+$|pn\d+-)/;

export function setTypeOf(name: string): SetType {
  if (MAC_LIST_SET_RE.test(name)) return "list:set";
  return MAC_SET_RE.test(name) ? "bitmap:ip,mac" : IFACE_SET_RE.test(name) ? "hash:net,iface" : "hash:net";
}

/** The /16 a MAC set covers, e.g. "10.1.0.0/16" for pal4m-10-1 (or pal4m_<network>-10-1); undefined for other names. */
export function macSetRange(name: string): string | undefined {
  const m = MAC_SET_RE.exec(name);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255) return undefined;
  return `${Number(m[1])}.${Number(m[2])}.0.0/16`;
}
