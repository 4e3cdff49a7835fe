// Interface name -> endpoint chain dispatch, as a tree of chains keyed by
// interface-name prefixes, so a packet crosses O(log n) rules rather than a
// linear list. Every node ends in DROP: an interface with the workload prefix
// but no endpoint is dropped.
import type { IpVersion } from "../model/index.js";
import type { CalcConfig, ChainDef } from "./desired-state.js";
import { denyReportLines } from "./flow-log.js";
import { ENTRY_CHAINS, fromDispatchNode, fromWorkloadChain, toDispatchNode, toWorkloadChain } from "./names.js";

/** Names per node before the node splits by the next character. */
export const DISPATCH_FANOUT = 16;

interface Direction {
  root: string;
  flag: "-i" | "-o";
  node: (prefix: string) => string;
  leaf: (iface: string) => string;
}

const FROM: Direction = { root: ENTRY_CHAINS.fromWorkload, flag: "-i", node: fromDispatchNode, leaf: fromWorkloadChain };
const TO: Direction = { root: ENTRY_CHAINS.toWorkload, flag: "-o", node: toDispatchNode, leaf: toWorkloadChain };

function build(names: string[], prefix: string, chain: string, dir: Direction, family: IpVersion, out: ChainDef[], cfg?: CalcConfig): void {
  const rules: string[] = [];
  if (names.length <= DISPATCH_FANOUT) {
    for (const n of names) rules.push(`${dir.flag} ${n} -g ${dir.leaf(n)}`);
  } else {
    const groups = new Map<string, string[]>();
    for (const n of names) {
      if (n.length === prefix.length) {
        rules.push(`${dir.flag} ${n} -g ${dir.leaf(n)}`);
        continue;
      }
      const next = n.slice(0, prefix.length + 1);
      let g = groups.get(next);
      if (!g) groups.set(next, (g = []));
      g.push(n);
    }
    for (const members of groups.values()) {
      if (members.length === 1) {
        rules.push(`${dir.flag} ${members[0]} -g ${dir.leaf(members[0]!)}`);
      } else {
        // Skip levels where every member shares the next characters too.
        const common = longestCommonPrefix(members);
        const child = dir.node(common);
        rules.push(`${dir.flag} ${common}+ -g ${child}`);
        build(members, common, child, dir, family, out, cfg);
      }
    }
  }
  // A workload interface without an endpoint: reported (DESIGN §6.12), dropped.
  if (cfg) rules.push(...denyReportLines(cfg, [""], "n", chain));
  rules.push("-j DROP");
  out.push({ table: "filter", family, name: chain, rules });
}

function longestCommonPrefix(names: string[]): string {
  let p = names[0]!;
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p;
}

/** All dispatch chains of a host, for both directions, in one family. */
export function renderDispatch(interfaceNames: Iterable<string>, family: IpVersion, cfg?: CalcConfig): ChainDef[] {
  const names = [...new Set(interfaceNames)].sort();
  const out: ChainDef[] = [];
  build(names, "", FROM.root, FROM, family, out, cfg);
  build(names, "", TO.root, TO, family, out, cfg);
  return out;
}
