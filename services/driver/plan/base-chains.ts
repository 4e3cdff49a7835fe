// The driver's own plumbing (the only chains it renders itself): the chains
// hooked from FORWARD and INPUT, scoped to workload interfaces by prefix, and
// fail-closed placeholders for the controller's entry chains.
//
// Why here and not in the controller: these must exist before the driver
// has ever reached a controller (fail closed from the first second), and
// they depend only on this host's interface prefixes.
import { type ChainDef } from "../../contract/host-update.js";
import { ADMIT_CHAIN, BASE_CHAINS, ENTRY_CHAINS } from "../../contract/dataplane-names.js";
import type { IpVersion } from "../../model/index.js";
import { BRIDGE_CHAINS } from "./bridge-guard.js";
import { endedReportRules, fastPathMatch, GONE_CHAIN, MIDSTREAM_PICKUP, PENDING_MARK, RELATED_NOT_PENDING, renderAdmitChain, renderEndedChains, renderGoneChain, renderReplyChain, REPLY_RECHECK_CHAIN } from "./revocation.js";

/**
 * How a workload port shows in a chain, per prefix wildcard `P+`: routed
 * (`-i/-o`) and, on a host with br_netfilter, as a bridge port (`physdev`).
 * A bridged frame crosses FORWARD with the *bridge* as `-i`/`-o` and the
 * taps only as physdev (DESIGN §6.3), so `-i tap+` alone never sees it:
 * without the physdev forms, bridged workloads would bypass every chain
 * (fail open).
 *
 * From a workload: `--physdev-in P+` without `--physdev-is-bridged`, so a
 * frame that entered through a workload's bridge port and is then routed by
 * the host is judged too. To a workload: `--physdev-out` is only known for
 * bridged frames (the kernel refuses it for routed ones in FORWARD), hence
 * `--physdev-is-bridged`.
 */
function portMatches(w: string, bridged: boolean) {
  const physIn = `-m physdev --physdev-in ${w}`;
  const physOut = `-m physdev --physdev-out ${w} --physdev-is-bridged`;
  return {
    from: bridged ? [`-i ${w}`, physIn] : [`-i ${w}`],
    to: bridged ? [`-o ${w}`, physOut] : [`-o ${w}`],
    physIn: bridged ? physIn : undefined,
    physOut: bridged ? physOut : undefined,
  };
}

/**
 * `bridged`: render the physdev forms and the bridge-port chains they jump
 * to (bridge-guard.ts). Only when br_netfilter is already present in the
 * driver's namespace: on kernels where xt_physdev is a module, the first
 * physdev rule loads br_netfilter, which changes how every bridge of the
 * host forwards (DESIGN §6.3).
 *
 * `epoch`: this family's policy epoch when revoked connections are ended
 * (DESIGN §6.14); undefined renders the plain conntrack fast path (every
 * established packet accepted before any policy). `goneNets`: addresses
 * that recently left an endpoint of this host (`pal-ct-gone`).
 */
export function renderBaseChains(prefixes: readonly string[], family: IpVersion, bridged = false, epoch?: number, goneNets: readonly string[] = []): ChainDef[] {
  const fwd: string[] = [];
  const inp: string[] = [];
  const ports = prefixes.map((p) => portMatches(`${p}+`, bridged));
  const both = (m: ReturnType<typeof portMatches>) => [...m.from, ...m.to];
  const forms = ports.flatMap(both);
  const accept = epoch === undefined ? "-j ACCEPT" : `-g ${ADMIT_CHAIN}`;
  /**
   * The conntrack part, rule kind by rule kind over the forms (so a
   * packet meets its fast path after the same rules as without epochs:
   * established traffic pays no extra lookup): INVALID dropped; then what
   * passes without policy.
   */
  const established = (fs: readonly string[], reply: string): string[] => {
    if (epoch === undefined) return fs.map((s) => `${s} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    return [
      // Judged in the current epoch, not pending: the one fast-path rule.
      ...fs.map((s) => `${s} ${fastPathMatch(epoch)} -j ACCEPT`),
      // An ICMP error or helper flow of a connection not denied since: as before.
      ...fs.map((s) => `${s} ${RELATED_NOT_PENDING} -j ACCEPT`),
      // Denied by the last re-check, not yet reported: reported ended, once.
      ...fs.flatMap((s) => endedReportRules(s, reply !== accept)),
      // Judged under an older policy. A reply is judged by the mirrored
      // rules (pal-ct-reply); an original-direction packet falls through to
      // the roots, like a new flow, marked pending until one admits it.
      ...fs.map((s) => `${s} -m conntrack --ctstate ESTABLISHED --ctdir REPLY ${reply}`),
      ...fs.map((s) => `${s} -m conntrack --ctstate ESTABLISHED ${PENDING_MARK}`),
      // A TCP packet without SYN that conntrack sees as NEW: if its address
      // recently left an endpoint here (its entries were deleted), it starts
      // no connection; with nf_conntrack_tcp_loose it would, and a new
      // endpoint at the address would inherit the old one's connection
      // (DESIGN §6.14). Other pick-ups (live migration) go on as before.
      ...fs.map((s) => `${s} ${MIDSTREAM_PICKUP} -j ${GONE_CHAIN}`),
    ];
  };
  for (const s of forms) fwd.push(`${s} -m conntrack --ctstate INVALID -j DROP`);
  fwd.push(...established(forms, `-g ${REPLY_RECHECK_CHAIN}`));
  // Policy: from-workload first (sender's outbound), then to-workload
  // (receiver's inbound); both RETURN on allow, so same-host traffic passes
  // both. A bridge port first passes its allowances and its guard (the
  // port's own addresses), which the roots cannot check: they see the
  // bridge, not the port (DESIGN §6.3).
  for (const m of ports) if (m.physIn) fwd.push(`${m.physIn} -j ${BRIDGE_CHAINS.from}`);
  for (const m of ports) for (const s of m.from) fwd.push(`${s} -j ${ENTRY_CHAINS.fromWorkload}`);
  for (const m of ports) if (m.physOut) fwd.push(`${m.physOut} -j ${BRIDGE_CHAINS.to}`);
  for (const m of ports) for (const s of m.to) fwd.push(`${s} -j ${ENTRY_CHAINS.toWorkload}`);
  for (const m of ports) for (const s of both(m)) fwd.push(`${s} ${accept}`);

  // Delivered to the host through a bridge: -i is the bridge, the tap is physdev-in.
  const fromForms = ports.flatMap((m) => m.from);
  for (const s of fromForms) inp.push(`${s} -m conntrack --ctstate INVALID -j DROP`);
  // A stale reply from a workload to the host (the host opened the
  // connection; host-to-workload traffic is not policed): admitted.
  inp.push(...established(fromForms, accept));
  for (const m of ports) {
    for (const s of m.from) {
      if (family === 4) {
        // DHCP to the host's DHCP agent.
        inp.push(`${s} -p udp --sport 68 --dport 67 ${accept}`);
      } else {
        // Router/neighbour discovery and MLD: IPv6 does not work without them.
        for (const t of [130, 131, 132, 133, 135, 136]) inp.push(`${s} -p icmpv6 -m icmp6 --icmpv6-type ${t} ${accept}`);
        inp.push(`${s} -p udp --sport 546 --dport 547 ${accept}`);
      }
      // A bridge port's source must be its own (the roots see the bridge).
      if (s === m.physIn) inp.push(`${s} -j ${BRIDGE_CHAINS.guardFrom}`);
      inp.push(`${s} -j ${ENTRY_CHAINS.workloadToHost}`);
    }
  }
  const out: ChainDef[] = [
    { table: "filter", family, name: BASE_CHAINS.forward, rules: fwd },
    { table: "filter", family, name: BASE_CHAINS.input, rules: inp },
    // Always there: the controller's workload-to-host accept and the bridge
    // allowances go to it (a plain ACCEPT when the epoch is off).
    renderAdmitChain(family, epoch),
  ];
  if (epoch !== undefined) {
    const forms = {
      from: ports.flatMap((m) => m.from),
      to: ports.flatMap((m) => m.to),
      physIn: ports.flatMap((m) => (m.physIn ? [m.physIn] : [])),
      physOut: ports.flatMap((m) => (m.physOut ? [m.physOut] : [])),
    };
    out.push(renderReplyChain(family, forms, BRIDGE_CHAINS.from, BRIDGE_CHAINS.to), renderGoneChain(family, goneNets), ...renderEndedChains(family, epoch));
  }
  return out;
}

/** Until the controller's state arrives, its entry chains drop everything. */
export function failClosedEntryChains(family: IpVersion): ChainDef[] {
  return Object.values(ENTRY_CHAINS).map((name) => ({ table: "filter" as const, family, name, rules: ["-j DROP"] }));
}
