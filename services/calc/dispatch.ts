// Interface name -> endpoint chain dispatch, as a tree of chains keyed by
// interface-name prefixes, so a packet crosses O(log n) rules rather than a
// linear list. Every node ends in DROP: an interface with the workload prefix
// but no endpoint is dropped.
import type { IpVersion } from "../model/index.js";
import type { CalcConfig, ChainDef } from "./desired-state.js";
import { denyReportLines } from "./flow-log.js";
import { DISPATCH_FANOUT, prefixTree } from "./prefix-tree.js";
import { ENTRY_CHAINS, fromDispatchNode, fromWorkloadChain, toDispatchNode, toWorkloadChain } from "./names.js";

export { DISPATCH_FANOUT };

interface Direction {
  root: string;
  flag: "-i" | "-o";
  node: (prefix: string) => string;
  leaf: (iface: string) => string;
}

const FROM: Direction = { root: ENTRY_CHAINS.fromWorkload, flag: "-i", node: fromDispatchNode, leaf: fromWorkloadChain };
const TO: Direction = { root: ENTRY_CHAINS.toWorkload, flag: "-o", node: toDispatchNode, leaf: toWorkloadChain };

/** All dispatch chains of a host, for both directions, in one family. */
export function renderDispatch(interfaceNames: Iterable<string>, family: IpVersion, cfg?: CalcConfig): ChainDef[] {
  const tree = prefixTree([...new Set(interfaceNames)].sort());
  const out: ChainDef[] = [];
  for (const dir of [FROM, TO]) {
    for (const [prefix, entries] of tree.nodes) {
      const chain = prefix === "" ? dir.root : dir.node(prefix);
      const rules = entries.map((e) => ("leaf" in e ? `${dir.flag} ${e.leaf} -g ${dir.leaf(e.leaf)}` : `${dir.flag} ${e.child}+ -g ${dir.node(e.child)}`));
      // A workload interface without an endpoint: reported (DESIGN §6.12), dropped.
      if (cfg) rules.push(...denyReportLines(cfg, [""], "n", chain));
      rules.push("-j DROP");
      out.push({ table: "filter", family, name: chain, rules });
    }
  }
  return out;
}
