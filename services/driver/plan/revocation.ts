// Revoked connections end (DESIGN §6.14): the connection-mark layout, the
// driver's chains that judge an established packet again when its
// connection was judged under an older policy epoch, and which applies may
// revoke something (and so advance a family's epoch).
//
// Pure: the driver (driver.ts) keeps the epochs and hands them to the base
// chains (base-chains.ts); a RevocationWatch sees each apply's changes.
import type { ChainDef } from "../../contract/host-update.js";
import { ADMIT_CHAIN, ENTRY_CHAINS, REPLY_CHECK_MARK } from "../../contract/dataplane-names.js";
import { DEFAULT_LOG_MARK, ENDED_CHAINS, FLOW_LOG_CHAINS, logPrefix, nflogTarget } from "../../contract/flow-report-format.js";
import type { IpVersion } from "../../model/index.js";
import type { DesiredChanges, DesiredSet } from "../sync/desired-state.js";

/**
 * Connection-mark bits (the ct mark, not the packet mark): the epoch in the
 * high half, the pending bit (the last re-check denied it) and the reported
 * bit (its end was reported) below. The low 14 bits stay free for others.
 */
export const CT_EPOCH_SHIFT = 16;
export const CT_EPOCH_MASK = 0xffff0000;
export const CT_PENDING = 0x8000;
export const CT_REPORTED = 0x4000;
export const MAX_EPOCH = 0xffff;

/** The driver's chain for a reply-direction re-check. */
export const REPLY_RECHECK_CHAIN = "pal-ct-reply";

export const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** Epochs run 1..MAX_EPOCH; 0 (a connection no Palisade driver marked) is never current. */
export function nextEpoch(e: number): number {
  return e >= MAX_EPOCH || e < 1 ? 1 : e + 1;
}

/** A first epoch for a driver that starts: any, but unlikely to be the one before it. */
export function initialEpoch(random: () => number = Math.random): number {
  return 1 + Math.floor(random() * MAX_EPOCH) % MAX_EPOCH;
}

const epochBits = (epoch: number) => (epoch << CT_EPOCH_SHIFT) >>> 0;

/** The fast path: an established packet of a connection judged in this epoch, and not pending. */
export function fastPathMatch(epoch: number): string {
  return `-m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark ${hex(epochBits(epoch))}/${hex(CT_EPOCH_MASK | CT_PENDING)}`;
}

/** Marks a connection admitted in `epoch` (clears pending and reported). */
export function admitMark(epoch: number): string {
  return `-j CONNMARK --set-xmark ${hex(epochBits(epoch))}/${hex(CT_EPOCH_MASK | CT_PENDING | CT_REPORTED)}`;
}

/** An ICMP error or helper flow (RELATED) of a connection whose last re-check did not deny it. */
export const RELATED_NOT_PENDING = `-m conntrack --ctstate RELATED -m connmark --mark 0x0/${hex(CT_PENDING)}`;

/** A TCP segment without SYN that conntrack would take as a new connection (nf_conntrack_tcp_loose). */
export const MIDSTREAM_PICKUP = "-p tcp -m conntrack --ctstate NEW -m tcp ! --tcp-flags SYN,RST,ACK,FIN SYN";

/** The driver's chain of addresses that recently left an endpoint of this host (no inheritance). */
export const GONE_CHAIN = "pal-ct-gone";

/** How long a departed address's mid-stream TCP pick-ups are refused: longer than TCP's own retransmission give-up (~15 min). */
export const GONE_WINDOW_MS = 20 * 60_000;
/** At most this many departed addresses per family in the chain (the oldest leave it first). */
export const GONE_CAP = 1_024;

/**
 * `pal-ct-gone`: reached only by a mid-stream TCP pick-up (MIDSTREAM_PICKUP).
 * Its connection's entry was deleted because the address left its endpoint:
 * such a segment must not start a connection that a new endpoint at the
 * address would then carry on (DESIGN §6.14). Any other pick-up (a live
 * migrated VM's connections arriving here) returns and is judged as today.
 */
export function renderGoneChain(family: IpVersion, nets: readonly string[]): ChainDef {
  return { table: "filter", family, name: GONE_CHAIN, rules: nets.flatMap((n) => [`-s ${n} -j DROP`, `-d ${n} -j DROP`]) };
}

/** Set before a re-check: stays unless the policy admits the packet. */
export const PENDING_MARK = `-j CONNMARK --set-xmark ${hex(CT_PENDING)}/${hex(CT_PENDING)}`;

/**
 * `pal-ct-admit`, where every packet Palisade accepts is accepted (the
 * controller's workload-to-host "accept" too): with an epoch, the
 * connection is marked judged in it. Without (the behaviour turned off),
 * a plain ACCEPT.
 */
export function renderAdmitChain(family: IpVersion, epoch: number | undefined): ChainDef {
  const rules = epoch === undefined
    ? ["-j ACCEPT"]
    : [admitMark(epoch), `-j MARK --set-xmark 0x0/${hex(REPLY_CHECK_MARK)}`, "-j ACCEPT"];
  return { table: "filter", family, name: ADMIT_CHAIN, rules };
}

/**
 * `pal-ct-reply`: a reply-direction packet of a connection judged in an
 * older epoch (or pending). It is judged as its connection's first packet
 * would be now: the side it leaves by the original receiver's inbound rules,
 * the side it reaches by the original sender's outbound rules, each
 * mirrored (the workload chains divert on REPLY_CHECK_MARK, DESIGN §6.5). A
 * bridge port's allowances and guard come first, as in pal-FORWARD.
 */
export function renderReplyChain(family: IpVersion, forms: { from: readonly string[]; to: readonly string[]; physIn: readonly string[]; physOut: readonly string[] }, bridgeFrom: string, bridgeTo: string): ChainDef {
  const rules = [`-j MARK --set-xmark ${hex(REPLY_CHECK_MARK)}/${hex(REPLY_CHECK_MARK)}`, PENDING_MARK];
  for (const s of forms.physIn) rules.push(`${s} -j ${bridgeFrom}`);
  for (const s of forms.from) rules.push(`${s} -j ${ENTRY_CHAINS.fromWorkload}`);
  for (const s of forms.physOut) rules.push(`${s} -j ${bridgeTo}`);
  for (const s of forms.to) rules.push(`${s} -j ${ENTRY_CHAINS.toWorkload}`);
  rules.push(`-g ${ADMIT_CHAIN}`);
  return { table: "filter", family, name: REPLY_RECHECK_CHAIN, rules };
}

// ---- ended connections, visible (issue #21 item 7) ----

/** A connection whose last re-check denied it, and whose end is not reported yet. */
export const DENIED_UNREPORTED = `-m connmark --mark ${hex(CT_PENDING)}/${hex(CT_PENDING | CT_REPORTED)}`;

/** Whether a port form is the packet's in-interface side (`-i P+`, `--physdev-in`). */
const inSide = (form: string) => form.startsWith("-i ") || form.includes("--physdev-in ");

/**
 * The stale path's report rules for one port form, placed before the
 * pending mark is set again: a packet of a connection the last re-check
 * denied (pending) and not yet reported is the first one after the denial;
 * its connection is reported ended once (the report chain sets REPORTED;
 * an admit clears it with pending). Which chain says whose connection it
 * was: the side of the packet the workload is on and the packet's
 * direction in its connection (ENDED_CHAINS). `replies`: only where
 * replies are judged again (pal-FORWARD); INPUT admits every reply (the
 * host opened those connections), so none is ever pending there.
 */
export function endedReportRules(form: string, replies: boolean): string[] {
  const from = inSide(form);
  const out = [`${form} -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL ${DENIED_UNREPORTED} -j ${from ? ENDED_CHAINS.outFrom : ENDED_CHAINS.inTo}`];
  if (replies) out.push(`${form} -m conntrack --ctstate ESTABLISHED --ctdir REPLY ${DENIED_UNREPORTED} -j ${from ? ENDED_CHAINS.inFrom : ENDED_CHAINS.outTo}`);
  return out;
}

/**
 * The report chains: `pal-end` marks the connection reported (its first
 * rule's packet counter counts every ended connection exactly, whatever the
 * rate limit: the driver reads it for palisade_driver_connections_ended_total)
 * and takes a flow-report token (pal-log); each of the four side chains
 * reports through NFLOG when it got one, with the epoch as the prefix's "n"
 * (the driver maps it to the revision that advanced it), then clears the
 * log mark. The packet then goes on to be judged again, as before.
 */
export function renderEndedChains(family: IpVersion, epoch: number, logMark = DEFAULT_LOG_MARK): ChainDef[] {
  const l = hex(logMark);
  const side = (name: string): ChainDef => ({
    table: "filter", family, name,
    rules: [`-j ${ENDED_CHAINS.count}`, `-m mark --mark ${l}/${l} ${nflogTarget(logPrefix("e", name, epoch))}`, `-j MARK --set-xmark 0x0/${l}`],
  });
  return [
    { table: "filter", family, name: ENDED_CHAINS.count, rules: [`-j CONNMARK --set-xmark ${hex(CT_REPORTED)}/${hex(CT_REPORTED)}`, `-j ${FLOW_LOG_CHAINS.deny}`] },
    side(ENDED_CHAINS.outFrom), side(ENDED_CHAINS.inTo), side(ENDED_CHAINS.inFrom), side(ENDED_CHAINS.outTo),
  ];
}

/** Position (1-based) in ENDED_CHAINS.count of the rule whose packet counter is the number of ended connections. */
export const ENDED_COUNT_RULE = 1;

// ---- which applies may revoke ----

/**
 * Dispatch chains (DESIGN §6.5): the entry roots, the workload chains and
 * the position trees. A line there comes or goes only with set members that
 * do too (a position's line with its profile's first member there; a
 * missing line with its set's; a workload chain's call of a position with
 * the longest list: a position appears with the members of the first list
 * that long, and goes with the last one's), so their changes revoke nothing
 * by themselves. (A call of a position no member reaches changes no
 * verdict: its chain drops only what would have dropped at the workload
 * chain's end.)
 */
const DISPATCH_RE = /^pal-(?:from-wl-dispatch|to-wl-dispatch|[cr][ft]|[cr][ft]\d+(?:-[a-z2-7]+)?|c[ft]n-.*)$/;
/**
 * Classification sets whose members say which endpoint an (address,
 * interface) is. `pal[46]ic_` and the `pal-cfn-`/`pal-ctn-` nodes above are
 * the class layout of builds before the position layout, which an older
 * controller still renders while the drivers are upgraded first.
 */
const ENDPOINT_SET_RE = /^pal[46]i(?:-active$|-inactive$|c_)/;
const SET_REF_RE = /(!\s+)?--match-set\s+(\S+)/g;

function familyOfKey(key: string): IpVersion {
  return key.startsWith("6:") ? 6 : 4;
}

/** Per set: how rules use it. A DROP rule that needs membership is restrictive, an allow rule that needs non-membership too. */
function restrictiveRefs(rules: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    const drops = /-j DROP$/.test(r);
    for (const m of r.matchAll(SET_REF_RE)) if (drops !== (m[1] !== undefined)) out.add(m[2]!);
  }
  return out;
}

/** An address that left an interface of this host: its connections are deleted (no inheritance). */
export interface GoneAddress {
  family: IpVersion;
  net: string;
  iface: string;
  /** The address is still on another interface or endpoint of this host after the apply (replaced or moved). */
  stillOnHost: boolean;
}

/** What one apply asks of the revocation mechanism. */
export interface RevocationVerdict {
  /** Families whose epoch must advance in this apply. */
  bump: IpVersion[];
  /** Addresses that left a workload interface, or whose interface's endpoint was replaced. */
  gone: GoneAddress[];
  /** Addresses new on this host in this apply (on no interface before it). */
  arrived: { family: IpVersion; net: string }[];
}

/** What the watch reads of the apply's desired state. */
export interface RevocationInput {
  /** The controller's chains by chainKey (the driver's own are not policy). */
  chains: ReadonlyMap<string, ChainDef>;
  sets: ReadonlyMap<string, DesiredSet>;
  /** Endpoint key -> interface. */
  endpoints: ReadonlyMap<string, string>;
}

const splitMember = (m: string): [string, string] => {
  const comma = m.lastIndexOf(",");
  return [m.slice(0, comma), m.slice(comma + 1)];
};

/**
 * Watches the desired state's changes, apply by apply, and says whether an
 * apply may revoke a flow that conntrack admitted:
 *   - a member removed from any set;
 *   - a member added to a set that a DROP rule matches, or that an allow
 *     rule matches negated (a peer joining a tag that a deny rule names);
 *   - a chain that existed before changed, other than the dispatch roots
 *     and tree nodes (which change only with set members that also do).
 * Everything else (new endpoints, new
 * chains and sets, members of sets used only positively by allow rules)
 * only lets more through: no epoch, no cost (issue #21 item 6).
 * A full plan (no changes known) may revoke anything.
 *
 * It also says which (address, interface) pairs left this host's endpoints
 * — an address gone from every classification set, or every address of an
 * interface whose endpoint was removed or replaced by another endpoint —
 * whose connections the driver deletes: the epoch alone would let a new
 * endpoint at the same address and interface, admitted by its own policy,
 * take over the old one's connections.
 */
export class RevocationWatch {
  /** chainKey -> the sets its rules use restrictively. */
  private readonly refsByChain = new Map<string, Set<string>>();
  /** set -> how many chains use it restrictively. */
  private readonly restrictive = new Map<string, number>();
  /** Classification set -> its members as of the previous apply. */
  private readonly endpointMembers = new Map<string, Set<string>>();
  /** Interface -> "family net" -> how many classification sets hold it (previous apply). */
  private readonly onIface = new Map<string, Map<string, number>>();
  /** Endpoint key -> interface, as of the previous apply. */
  private readonly holders = new Map<string, string>();
  /** "family net" -> how many (classification set, interface) members hold it. */
  private readonly onHost = new Map<string, number>();
  /** The sets the previous apply programmed: a set new in this apply only gains members. */
  private readonly knownSets = new Set<string>();
  private arrived: { family: IpVersion; net: string }[] = [];

  /**
   * `isWorkloadIface`: whether an interface is a workload's (the driver's
   * prefixes). A member on any other interface (a bridge's twin,
   * DESIGN §6.3) stands for a workload's and is never deleted by itself.
   */
  constructor(private readonly families: readonly IpVersion[], private readonly isWorkloadIface: (iface: string) => boolean = () => true) {}

  observe(now: RevocationInput, changes: DesiredChanges | undefined): RevocationVerdict {
    const bump = new Set<IpVersion>();
    const gone = new Map<string, GoneAddress>();
    const goneAt = (family: IpVersion, net: string, iface: string) => {
      if (this.isWorkloadIface(iface)) gone.set(`${family} ${net} ${iface}`, { family, net, iface, stillOnHost: false });
    };
    this.arrived = [];
    const verdict = (families: Iterable<IpVersion>): RevocationVerdict => {
      const out = [...gone.values()];
      for (const g of out) g.stillOnHost = (this.onHost.get(`${g.family} ${g.net}`) ?? 0) > 0;
      const bumped = new Set(families);
      return { bump: this.families.filter((f) => bumped.has(f)), gone: out, arrived: this.arrived };
    };

    // Interfaces whose endpoint left or was replaced: every address they
    // held before this apply.
    const keys = changes ? changes.endpoints ?? [] : new Set([...this.holders.keys(), ...now.endpoints.keys()]);
    for (const k of keys) {
      const was = this.holders.get(k);
      const is = now.endpoints.get(k);
      if (was !== undefined && was !== is) {
        for (const fn of this.onIface.get(was)?.keys() ?? []) {
          const sp = fn.indexOf(" ");
          goneAt(Number(fn.slice(0, sp)) as IpVersion, fn.slice(sp + 1), was);
        }
      }
      if (is === undefined) this.holders.delete(k);
      else this.holders.set(k, is);
    }

    if (!changes) {
      this.refsByChain.clear();
      this.restrictive.clear();
      for (const [k, c] of now.chains) this.index(k, c);
      for (const present of [true, false]) {
        for (const name of [...this.endpointMembers.keys()]) if (!now.sets.has(name)) this.syncSet(name, undefined, goneAt, present);
        for (const [name, set] of now.sets) if (ENDPOINT_SET_RE.test(name)) this.syncSet(name, set, goneAt, present);
      }
      this.knownSets.clear();
      for (const name of now.sets.keys()) this.knownSets.add(name);
      return verdict(this.families);
    }
    for (const key of changes.chains) {
      const existed = this.refsByChain.has(key);
      const c = now.chains.get(key);
      const name = key.slice(key.lastIndexOf(":") + 1);
      if (existed && !DISPATCH_RE.test(name)) bump.add(familyOfKey(key));
      this.unindex(key);
      if (c) this.index(key, c);
    }
    // Classification sets: additions first, so an address that moves from
    // the inactive set to the active one (or back) in this apply never
    // counts as gone.
    for (const present of [true, false]) {
      for (const [name, touched] of changes.sets) {
        if (!ENDPOINT_SET_RE.test(name)) continue;
        const set = now.sets.get(name);
        const family: IpVersion = set?.family ?? (name.startsWith("pal6") ? 6 : 4);
        if (touched === "all" || !set) { this.syncSet(name, set, goneAt, present); continue; }
        for (const m of touched) if (set.members.has(m) === present) this.syncMember(name, family, m, present, goneAt);
      }
    }
    for (const [name, touched] of changes.sets) {
      const set = now.sets.get(name);
      const family: IpVersion = set?.family ?? (name.startsWith("pal6") ? 6 : 4);
      const known = this.knownSets.has(name);
      if (set) this.knownSets.add(name);
      else this.knownSets.delete(name);
      // A set new in this apply only gains members (a bridge port's own
      // set when its tap joins, a tag's set when first referenced).
      if (!known && set) { if (set.members.size && this.restrictive.has(name)) bump.add(family); continue; }
      if (touched === "all" || !set) { bump.add(family); continue; }
      for (const m of touched) {
        if (!set.members.has(m)) bump.add(family);
        else if (this.restrictive.has(name)) bump.add(family);
      }
    }
    return verdict(bump);
  }

  /** A classification set compared in full with what the watch last saw of it: its additions, or its removals. */
  private syncSet(name: string, set: DesiredSet | undefined, goneAt: (f: IpVersion, net: string, iface: string) => void, additions: boolean): void {
    const family: IpVersion = set?.family ?? (name.startsWith("pal6") ? 6 : 4);
    const seen = this.endpointMembers.get(name);
    if (additions) {
      for (const m of set?.members ?? []) if (!seen?.has(m)) this.syncMember(name, family, m, true, goneAt);
    } else {
      for (const m of [...(seen ?? [])]) if (!set?.members.has(m)) this.syncMember(name, family, m, false, goneAt);
    }
  }

  private syncMember(name: string, family: IpVersion, m: string, present: boolean, goneAt: (f: IpVersion, net: string, iface: string) => void): void {
    let seen = this.endpointMembers.get(name);
    if ((seen?.has(m) ?? false) === present) return;
    const [net, iface] = splitMember(m);
    const fn = `${family} ${net}`;
    let byNet = this.onIface.get(iface);
    const onHost = this.onHost.get(fn) ?? 0;
    if (present) {
      if (!seen) this.endpointMembers.set(name, (seen = new Set()));
      seen.add(m);
      if (!byNet) this.onIface.set(iface, (byNet = new Map()));
      byNet.set(fn, (byNet.get(fn) ?? 0) + 1);
      if (onHost === 0) this.arrived.push({ family, net });
      this.onHost.set(fn, onHost + 1);
      return;
    }
    if (onHost > 1) this.onHost.set(fn, onHost - 1);
    else this.onHost.delete(fn);
    seen!.delete(m);
    if (!seen!.size) this.endpointMembers.delete(name);
    const n = (byNet?.get(fn) ?? 1) - 1;
    if (n > 0) { byNet!.set(fn, n); return; }
    byNet?.delete(fn);
    if (byNet && !byNet.size) this.onIface.delete(iface);
    goneAt(family, net, iface);
  }

  private index(key: string, c: ChainDef): void {
    const refs = restrictiveRefs(c.rules);
    this.refsByChain.set(key, refs);
    for (const s of refs) this.restrictive.set(s, (this.restrictive.get(s) ?? 0) + 1);
  }

  private unindex(key: string): void {
    const refs = this.refsByChain.get(key);
    if (!refs) return;
    this.refsByChain.delete(key);
    for (const s of refs) {
      const n = (this.restrictive.get(s) ?? 1) - 1;
      if (n > 0) this.restrictive.set(s, n);
      else this.restrictive.delete(s);
    }
  }
}
