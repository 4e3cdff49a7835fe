// The driver's own plumbing (the only chains it renders itself): the chains
// hooked from FORWARD and INPUT, scoped to workload interfaces by prefix, and
// fail-closed placeholders for the controller's entry chains.
//
// Why here and not in the controller: these must exist before the driver
// has ever reached a controller (fail closed from the first second), and
// they depend only on this host's interface prefixes.
import { type ChainDef } from "../../contract/host-update.js";
import { BASE_CHAINS, ENTRY_CHAINS } from "../../contract/dataplane-names.js";
import type { IpVersion } from "../../model/index.js";

export function renderBaseChains(prefixes: readonly string[], family: IpVersion): ChainDef[] {
  const fwd: string[] = [];
  const inp: string[] = [];
  const wild = prefixes.map((p) => `${p}+`);
  for (const w of wild) {
    fwd.push(`-i ${w} -m conntrack --ctstate INVALID -j DROP`, `-o ${w} -m conntrack --ctstate INVALID -j DROP`);
  }
  for (const w of wild) {
    fwd.push(`-i ${w} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-o ${w} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  }
  // Policy: from-workload first (sender's outbound), then to-workload
  // (receiver's inbound); both RETURN on allow, so same-host traffic passes both.
  for (const w of wild) fwd.push(`-i ${w} -j ${ENTRY_CHAINS.fromWorkload}`);
  for (const w of wild) fwd.push(`-o ${w} -j ${ENTRY_CHAINS.toWorkload}`);
  for (const w of wild) fwd.push(`-i ${w} -j ACCEPT`, `-o ${w} -j ACCEPT`);

  for (const w of wild) {
    inp.push(`-i ${w} -m conntrack --ctstate INVALID -j DROP`, `-i ${w} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    if (family === 4) {
      // DHCP to the host's DHCP agent.
      inp.push(`-i ${w} -p udp --sport 68 --dport 67 -j ACCEPT`);
    } else {
      // Router/neighbour discovery and MLD: IPv6 does not work without them.
      for (const t of [130, 131, 132, 133, 135, 136]) inp.push(`-i ${w} -p icmpv6 -m icmp6 --icmpv6-type ${t} -j ACCEPT`);
      inp.push(`-i ${w} -p udp --sport 546 --dport 547 -j ACCEPT`);
    }
    inp.push(`-i ${w} -j ${ENTRY_CHAINS.workloadToHost}`);
  }
  return [
    { table: "filter", family, name: BASE_CHAINS.forward, rules: fwd },
    { table: "filter", family, name: BASE_CHAINS.input, rules: inp },
  ];
}

/** Until the controller's state arrives, its entry chains drop everything. */
export function failClosedEntryChains(family: IpVersion): ChainDef[] {
  return Object.values(ENTRY_CHAINS).map((name) => ({ table: "filter" as const, family, name, rules: ["-j DROP"] }));
}
