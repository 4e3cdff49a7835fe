// Per-endpoint chains: to-workload (inbound rules) and from-workload
// (anti-spoofing, then outbound rules). Profiles are evaluated in
// profile_ids order; the first allow or deny decides; nothing matched -> DROP.
import type { Endpoint, IpVersion } from "../model/index.js";
import type { CalcConfig, ChainDef } from "./desired-state.js";
import { acceptMarkSpecs, markHex } from "./render-rules.js";
import { clearMask, denyReportLines } from "./flow-log.js";
import { fromWorkloadChain, profileInboundChain, profileOutboundChain, toWorkloadChain } from "./names.js";
import { hostAddress } from "../model/index.js";


/** A DROP that reports itself first (when flow reports are on). */
export function reportedDrop(cfg: CalcConfig, spec: string, code: "d" | "m" | "i" | "s" | "n" | "h", chain: string, n?: number): string[] {
  return [...denyReportLines(cfg, [spec], code, chain, n), spec ? `${spec} -j DROP` : "-j DROP"];
}

/** An ordered profile list as jumps: first allow (mark) returns, a missing profile or the end drops. */
export function profileJumps(profileIds: readonly string[], self: string, chainOf: (id: string) => string, exists: (id: string) => boolean, cfg: CalcConfig): string[] {
  const mark = acceptMarkSpecs(cfg);
  // With flow reports, the log mark is cleared too: one left by an allow
  // point upstream (the sender's outbound rules) must not make a report
  // point here fire (DESIGN §6.12).
  const m = markHex(clearMask(cfg));
  const rules = [`-j MARK --set-xmark 0x0/${m}`];
  for (const [position, id] of profileIds.entries()) {
    if (!exists(id)) {
      // A referenced profile that does not exist denies everything that the
      // profiles before it did not allow.
      rules.push(...reportedDrop(cfg, "", "m", self, position));
      return rules;
    }
    rules.push(`-j ${chainOf(id)}`, `${mark.isSet} -j RETURN`);
  }
  rules.push(...reportedDrop(cfg, "", "d", self));
  return rules;
}

export function renderEndpointChains(
  ep: Endpoint, family: IpVersion, profileExists: (id: string) => boolean, cfg: CalcConfig,
): ChainDef[] {
  const to = toWorkloadChain(ep.name);
  const from = fromWorkloadChain(ep.name);
  if (ep.state !== "active") {
    return [
      { table: "filter", family, name: to, rules: reportedDrop(cfg, "", "i", to) },
      { table: "filter", family, name: from, rules: reportedDrop(cfg, "", "i", from) },
    ];
  }
  const mark = acceptMarkSpecs(cfg);
  const addrs = (family === 4 ? ep.ipv4Nets : ep.ipv6Nets).map(hostAddress);
  const fromRules: string[] = [];
  if (ep.mac !== undefined) fromRules.push(...reportedDrop(cfg, `-m mac ! --mac-source ${ep.mac}`, "s", from));
  if (addrs.length === 0) {
    fromRules.push(...reportedDrop(cfg, "", "s", from));
  } else if (addrs.length === 1) {
    fromRules.push(...reportedDrop(cfg, `! -s ${addrs[0]}`, "s", from));
  } else {
    // "source is one of several addresses": mark each match, drop unmarked.
    fromRules.push(mark.clear, ...addrs.map((a) => `-s ${a} ${mark.set}`), ...reportedDrop(cfg, mark.notSet, "s", from));
  }
  if (addrs.length > 0) fromRules.push(...profileJumps(ep.profileIds, from, profileOutboundChain, profileExists, cfg));
  return [
    { table: "filter", family, name: to, rules: profileJumps(ep.profileIds, to, profileInboundChain, profileExists, cfg) },
    { table: "filter", family, name: from, rules: fromRules },
  ];
}
