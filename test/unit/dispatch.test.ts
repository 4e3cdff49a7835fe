// Interface -> endpoint chain dispatch tree (DESIGN §6.5): every leaf ends in
// DROP, every endpoint is reachable, a packet crosses O(log n) rules.
import { describe, expect, it } from "vitest";
import { DISPATCH_FANOUT, renderDispatch } from "../../services/calc/dispatch.js";
import { ENTRY_CHAINS, OWNED_CHAIN_RE, fromWorkloadChain, toWorkloadChain } from "../../services/calc/names.js";
import type { ChainDef } from "../../services/calc/desired-state.js";
import { mulberry32, randInt, shuffle } from "../support/prng.js";

type Flag = "-i" | "-o";

/**
 * Walks the tree like the kernel would: first matching rule wins; "X+"
 * matches any interface starting with X, "X" only X itself.
 */
function walk(chains: Map<string, readonly string[]>, root: string, flag: Flag, iface: string): { target: string; crossed: number } {
  let chain = root;
  let crossed = 0;
  for (let depth = 0; depth < 32; depth++) {
    const rules = chains.get(chain);
    if (!rules) throw new Error(`jump to missing chain ${chain}`);
    let next: string | undefined;
    for (const r of rules) {
      crossed++;
      if (r === "-j DROP") return { target: "DROP", crossed };
      const m = /^(-i|-o) (\S+) -g (\S+)$/.exec(r);
      if (!m || m[1] !== flag) throw new Error(`unexpected rule in ${chain}: ${r}`);
      const pat = m[2]!;
      const hit = pat.endsWith("+") ? iface.startsWith(pat.slice(0, -1)) : iface === pat;
      if (hit) { next = m[3]!; break; }
    }
    if (next === undefined) throw new Error(`chain ${chain} fell through without DROP`);
    if (!chains.has(next)) return { target: next, crossed };
    chain = next;
  }
  throw new Error("tree too deep");
}

const byName = (cs: ChainDef[]) => new Map(cs.map((c) => [c.name, c.rules]));
const hex = (rnd: () => number, n: number) => Array.from({ length: n }, () => "0123456789abcdef"[randInt(rnd, 16)]).join("");

function checkTree(cs: ChainDef[], names: string[], maxCrossed: number): void {
  const chains = byName(cs);
  expect(chains.size).toBe(cs.length); // names unique
  for (const c of cs) {
    expect(c.rules.at(-1)).toBe("-j DROP");
    expect(c.rules.slice(0, -1)).not.toContain("-j DROP");
    expect(c.name).toMatch(OWNED_CHAIN_RE);
    expect(c.rules.length).toBeLessThanOrEqual(DISPATCH_FANOUT + 64);
    for (const r of c.rules) {
      const m = /^-[io] (\S+) -g/.exec(r);
      // iptables: an interface argument (with its '+') must be shorter than IFNAMSIZ (16).
      if (m) expect(m[1]!.length).toBeLessThanOrEqual(15);
    }
  }
  // every non-root chain is the target of exactly one rule (no orphans, a tree)
  const targets = cs.flatMap((c) => c.rules.map((r) => /-g (\S+)$/.exec(r)?.[1]).filter((t): t is string => !!t && chains.has(t)));
  const roots = [ENTRY_CHAINS.fromWorkload, ENTRY_CHAINS.toWorkload];
  expect(new Set(targets).size).toBe(targets.length);
  expect([...targets, ...roots.filter((r) => chains.has(r))].sort()).toEqual([...chains.keys()].sort());

  for (const n of names) {
    const from = walk(chains, ENTRY_CHAINS.fromWorkload, "-i", n);
    expect(from.target).toBe(fromWorkloadChain(n));
    expect(from.crossed).toBeLessThan(maxCrossed);
    const to = walk(chains, ENTRY_CHAINS.toWorkload, "-o", n);
    expect(to.target).toBe(toWorkloadChain(n));
    expect(to.crossed).toBeLessThan(maxCrossed);
  }
}

describe("renderDispatch", () => {
  it("with no interfaces both roots just DROP", () => {
    const cs = renderDispatch([], 4);
    expect(cs).toEqual([
      { table: "filter", family: 4, name: "pal-from-wl-dispatch", rules: ["-j DROP"] },
      { table: "filter", family: 4, name: "pal-to-wl-dispatch", rules: ["-j DROP"] },
    ]);
  });

  it("a few interfaces: one flat, sorted list per direction, then DROP", () => {
    const cs = renderDispatch(["tapb", "tapa"], 6);
    expect(cs).toEqual([
      { table: "filter", family: 6, name: "pal-from-wl-dispatch", rules: ["-i tapa -g pal-fw-tapa", "-i tapb -g pal-fw-tapb", "-j DROP"] },
      { table: "filter", family: 6, name: "pal-to-wl-dispatch", rules: ["-o tapa -g pal-tw-tapa", "-o tapb -g pal-tw-tapb", "-j DROP"] },
    ]);
  });

  it(`up to ${DISPATCH_FANOUT} interfaces stay flat; one more builds a tree`, () => {
    const names = Array.from({ length: DISPATCH_FANOUT }, (_, i) => `tap${i.toString(16)}x`);
    expect(renderDispatch(names, 4)).toHaveLength(2);
    const more = [...names, "tapzz"];
    const cs = renderDispatch(more, 4);
    expect(cs.length).toBeGreaterThan(2);
    checkTree(cs, more, 40);
  });

  it("is deterministic: order and duplicates of the input do not matter", () => {
    const rnd = mulberry32(7);
    const names = Array.from({ length: 200 }, () => `tap${hex(rnd, 11)}`);
    const a = renderDispatch(names, 4);
    const b = renderDispatch([...shuffle(rnd, names), ...names.slice(0, 50)], 4);
    expect(b).toEqual(a);
  });

  it("every chain of a 1,000-interface tree ends in DROP, every interface is reachable in far fewer than 1,000 rules", () => {
    const rnd = mulberry32(1234);
    const names = [...new Set(Array.from({ length: 1000 }, () => `tap${hex(rnd, 11)}`))];
    expect(names.length).toBe(1000);
    const cs = renderDispatch(names, 4);
    expect(cs.every((c) => c.family === 4 && c.table === "filter")).toBe(true);
    checkTree(cs, names, 100);
  });

  it("unknown interfaces fall through to DROP, including prefixes of known ones", () => {
    const rnd = mulberry32(99);
    const names = Array.from({ length: 500 }, () => `tap${hex(rnd, 11)}`);
    const chains = byName(renderDispatch(names, 4));
    const known = new Set(names);
    const probes = ["eth0", "tap", "tap0", names[0]!.slice(0, 10), `${names[0]!.slice(0, 13)}z`, `${names[1]}`.replace(/^tap/, "tun")];
    for (let i = 0; i < 200; i++) probes.push(`tap${hex(rnd, 11)}`);
    for (const p of probes) {
      if (known.has(p)) continue;
      expect(walk(chains, ENTRY_CHAINS.fromWorkload, "-i", p).target).toBe("DROP");
      expect(walk(chains, ENTRY_CHAINS.toWorkload, "-o", p).target).toBe("DROP");
    }
  });

  it("names that are prefixes of other names are dispatched exactly", () => {
    const names = Array.from({ length: 300 }, (_, i) => `tap${i + 1}`); // tap1, tap10, tap100, ...
    names.push("tap", "ta", "t");
    checkTree(renderDispatch(names, 4), names, 100);
  });

  it("handles names of mixed prefixes and lengths (1 to 15 characters)", () => {
    const rnd = mulberry32(4242);
    const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    const names = new Set<string>();
    for (const p of ["tap", "veth", "qvo", "x"]) {
      for (let i = 0; i < 150; i++) {
        const len = 1 + randInt(rnd, 15 - p.length);
        names.add(p + Array.from({ length: len }, () => alphabet[randInt(rnd, alphabet.length)]).join(""));
      }
    }
    // A dense level: every possible next character after "w".
    for (const ch of alphabet) names.add(`w${ch}`);
    checkTree(renderDispatch(names, 6), [...names], 150);
  });

  it("long shared prefixes are skipped, not walked one character at a time", () => {
    const names = Array.from({ length: 40 }, (_, i) => `abcdefghij${i.toString().padStart(2, "0")}`);
    const cs = renderDispatch(names, 4);
    const from = cs.filter((c) => c.name.startsWith("pal-fd"));
    // abcdefghij+ then one node per first digit (0..3) -> 5 nodes, no chain per intermediate character
    expect(from.map((c) => c.name).sort()).toEqual([
      "pal-fd-abcdefghij", "pal-fd-abcdefghij0", "pal-fd-abcdefghij1", "pal-fd-abcdefghij2", "pal-fd-abcdefghij3",
    ]);
    checkTree(cs, names, 40);
  });
});
