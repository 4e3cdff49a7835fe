// Per-endpoint chains: to-workload (inbound rules) and from-workload
// (anti-spoofing, then outbound rules). Profiles are evaluated in
// profile_ids order; the first allow or deny decides; nothing matched -> DROP.
import type { Endpoint, IpVersion } from "../model/index.js";
import type { CalcConfig, ChainDef } from "./desired-state.js";
import { acceptMarkSpecs } from "./render-rules.js";
import { fromWorkloadChain, profileInboundChain, profileOutboundChain, toWorkloadChain } from "./names.js";
import { hostAddress } from "../model/index.js";


function profileJumps(ep: Endpoint, chainOf: (id: string) => string, exists: (id: string) => boolean, cfg: CalcConfig): string[] {
  const mark = acceptMarkSpecs(cfg);
  const rules = [mark.clear];
  for (const id of ep.profileIds) {
    if (!exists(id)) {
      // A referenced profile that does not exist denies everything that the
      // profiles before it did not allow.
      rules.push("-j DROP");
      return rules;
    }
    rules.push(`-j ${chainOf(id)}`, `${mark.isSet} -j RETURN`);
  }
  rules.push("-j DROP");
  return rules;
}

export function renderEndpointChains(
  ep: Endpoint, family: IpVersion, profileExists: (id: string) => boolean, cfg: CalcConfig,
): ChainDef[] {
  const to = toWorkloadChain(ep.name);
  const from = fromWorkloadChain(ep.name);
  if (ep.state !== "active") {
    return [
      { table: "filter", family, name: to, rules: ["-j DROP"] },
      { table: "filter", family, name: from, rules: ["-j DROP"] },
    ];
  }
  const mark = acceptMarkSpecs(cfg);
  const addrs = (family === 4 ? ep.ipv4Nets : ep.ipv6Nets).map(hostAddress);
  const fromRules: string[] = [];
  if (ep.mac !== undefined) fromRules.push(`-m mac ! --mac-source ${ep.mac} -j DROP`);
  if (addrs.length === 0) {
    fromRules.push("-j DROP");
  } else if (addrs.length === 1) {
    fromRules.push(`! -s ${addrs[0]} -j DROP`);
  } else {
    // "source is one of several addresses": mark each match, drop unmarked.
    fromRules.push(mark.clear, ...addrs.map((a) => `-s ${a} ${mark.set}`), `${mark.notSet} -j DROP`);
  }
  if (addrs.length > 0) fromRules.push(...profileJumps(ep, profileOutboundChain, profileExists, cfg));
  return [
    { table: "filter", family, name: to, rules: profileJumps(ep, profileInboundChain, profileExists, cfg) },
    { table: "filter", family, name: from, rules: fromRules },
  ];
}
