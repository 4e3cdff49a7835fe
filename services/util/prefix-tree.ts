// A prefix tree over sorted names (DESIGN §6.5), the shape of every tree the
// dataplane walks: the class tree, the IPv6 MAC interface tree (both the
// controller's) and the driver's bridge-port guard (DESIGN §6.3). Up to
// DISPATCH_FANOUT names in a node are listed flat; beyond, names are grouped
// by their next character, each group of two or more becoming a child node
// named by the group's longest common prefix (so long shared prefixes are
// skipped rather than walked one character at a time).

/** Names per node before the node splits by the next character. */
export const DISPATCH_FANOUT = 16;

/** One line of a node: a name, or a child node (its prefix). */
export type PrefixEntry = { leaf: string } | { child: string };

export interface PrefixTree {
  /** Node prefix ("" = root) -> its entries in order; children come before their parent (post-order). */
  nodes: Map<string, PrefixEntry[]>;
  /** Name -> the node prefixes above it (root excluded), outermost first. */
  paths: Map<string, string[]>;
}

export function prefixTree(sortedNames: readonly string[]): PrefixTree {
  const tree: PrefixTree = { nodes: new Map(), paths: new Map() };
  const build = (names: readonly string[], prefix: string, path: string[]) => {
    const entries: PrefixEntry[] = [];
    const leaf = (n: string) => { entries.push({ leaf: n }); tree.paths.set(n, path); };
    if (names.length <= DISPATCH_FANOUT) {
      names.forEach(leaf);
    } else {
      const groups = new Map<string, string[]>();
      for (const n of names) {
        if (n.length === prefix.length) { leaf(n); continue; }
        const next = n.slice(0, prefix.length + 1);
        let g = groups.get(next);
        if (!g) groups.set(next, (g = []));
        g.push(n);
      }
      for (const members of groups.values()) {
        if (members.length === 1) { leaf(members[0]!); continue; }
        let common = members[0]!;
        for (const m of members) while (!m.startsWith(common)) common = common.slice(0, -1);
        entries.push({ child: common });
        build(members, common, [...path, common]);
      }
    }
    tree.nodes.set(prefix, entries);
  };
  build(sortedNames, "", []);
  return tree;
}
