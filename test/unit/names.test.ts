// Kernel object names (DESIGN §6.1): within the kernel limits, hashed
// deterministically when long or unsafe, literal and hashed names disjoint.
import { describe, expect, it } from "vitest";
import {
  BASE_CHAINS, CHAIN_MAX, ENTRY_CHAINS, IPSET_MAX, OWNED_CHAIN_RE, OWNED_SET_RE,
  WORKLOAD_CHAINS, macNode, missingSet, mirroredInboundChain, mirroredOutboundChain, positionChain, positionNodeSet, positionSet, profileInboundChain,
  profileKey, profileOutboundChain, tagSet,
} from "../../services/calc/names.js";
import { ADMIT_CHAIN, setTypeOf } from "../../services/contract/dataplane-names.js";
import { LIMITS } from "../../services/model/index.js";

const CHAIN_NAMERS: [string, (s: string) => string][] = [
  ["pal-pi", profileInboundChain],
  ["pal-po", profileOutboundChain],
  ["pal-fm", macNode],
  ["pal-qi", mirroredInboundChain],
  ["pal-qo", mirroredOutboundChain],
];

const SAMPLE_IDS = [
  "db", "a", "x".repeat(21), "x".repeat(22), "x".repeat(128), "a.b_c-D", "has space", "sl/ash", "ünïcode",
  "quote\"", "new\nline", "9e3779b97f4a7c15", "-leading-dash", "_", "..",
];

describe("names: kernel limits", () => {
  it("the limits are the kernel's", () => {
    expect(CHAIN_MAX).toBe(28);
    expect(IPSET_MAX).toBe(31);
  });

  it.each(SAMPLE_IDS)("chain and set names for %j fit and are owned", (id) => {
    for (const [, f] of CHAIN_NAMERS) {
      const n = f(id);
      expect(n.length).toBeLessThanOrEqual(CHAIN_MAX);
      expect(n).toMatch(OWNED_CHAIN_RE);
    }
    for (const fam of [4, 6] as const) {
      const n = tagSet(id, fam);
      expect(n.length).toBeLessThanOrEqual(IPSET_MAX);
      expect(n).toMatch(OWNED_SET_RE);
    }
  });

  it("fixed chain names are owned and within limits", () => {
    for (const n of [...Object.values(BASE_CHAINS), ...Object.values(ENTRY_CHAINS)]) {
      expect(n).toMatch(OWNED_CHAIN_RE);
      expect(n.length).toBeLessThanOrEqual(CHAIN_MAX);
    }
  });
});

describe("names: literal names", () => {
  it("short safe identifiers are used literally, with '-' after the prefix", () => {
    expect(profileInboundChain("db")).toBe("pal-pi-db");
    expect(profileOutboundChain("db")).toBe("pal-po-db");
    expect(macNode("tap0a1b2c3d")).toBe("pal-fm-tap0a1b2c3d");
    expect(tagSet("db-user", 4)).toBe("pal4t-db-user");
    expect(tagSet("db-user", 6)).toBe("pal6t-db-user");
  });

  it("uses the literal form up to exactly the limit", () => {
    // "pal-pi-" is 7 characters: 21 more fit in 28.
    expect(profileInboundChain("x".repeat(21))).toBe(`pal-pi-${"x".repeat(21)}`);
    // "pal4t-" is 6 characters: 25 more fit in 31.
    expect(tagSet("t".repeat(25), 4)).toBe(`pal4t-${"t".repeat(25)}`);
  });

  it("interface names (at most 15 safe characters) never hash", () => {
    const iface = "abcdefghijklmno";
    expect(macNode(iface)).toBe("pal-fm-abcdefghijklmno");
  });
});

describe("names: hashed names", () => {
  it("one character over the limit hashes, with '_' after the prefix", () => {
    const n = profileInboundChain("x".repeat(22));
    expect(n).toMatch(/^pal-pi_[a-z2-7]{20}$/);
    const s = tagSet("t".repeat(26), 4);
    expect(s).toMatch(/^pal4t_[a-z2-7]{20}$/);
  });

  it("unsafe characters hash even when short", () => {
    expect(profileInboundChain("has space")).toMatch(/^pal-pi_[a-z2-7]+$/);
    expect(tagSet("a/b", 6)).toMatch(/^pal6t_[a-z2-7]+$/);
    expect(profileInboundChain("new\nline")).not.toContain("\n");
  });

  it("hashing is deterministic and input-sensitive", () => {
    const long = "x".repeat(100);
    expect(profileInboundChain(long)).toBe(profileInboundChain("x".repeat(100)));
    expect(profileInboundChain(long)).not.toBe(profileInboundChain(`${long}y`));
    expect(profileInboundChain(long)).not.toBe(profileInboundChain("x".repeat(99)));
    // The same identifier hashes alike in both families; the prefix keeps the sets apart.
    expect(tagSet(long, 4).slice(6)).toBe(tagSet(long, 6).slice(6));
    expect(tagSet(long, 4)).not.toBe(tagSet(long, 6));
  });

  it("distinct identifiers get distinct names (no collisions among many)", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3000; i++) ids.add(i % 2 ? `profile-with-a-rather-long-name-${i}` : `p${i}`);
    for (const [, f] of CHAIN_NAMERS.slice(0, 2)) {
      const names = new Set([...ids].map(f));
      expect(names.size).toBe(ids.size);
    }
    const sets = new Set([...ids].map((i) => tagSet(i, 4)));
    expect(sets.size).toBe(ids.size);
  });
});

describe("names: literal and hashed names can never collide", () => {
  it("the character after the prefix tells them apart", () => {
    for (const [prefix, f] of CHAIN_NAMERS) {
      for (const id of SAMPLE_IDS) {
        const n = f(id);
        const literal = n.startsWith(`${prefix}-`);
        const hashed = n.startsWith(`${prefix}_`);
        expect(literal !== hashed).toBe(true);
        if (literal) expect(n).toBe(`${prefix}-${id}`);
      }
    }
  });

  it("a literal identifier that looks like a hash does not produce the hashed name", () => {
    const long = "y".repeat(40);
    const hashed = profileInboundChain(long); // pal-pi_<hash>
    const hash = hashed.slice("pal-pi_".length);
    // Writing the hash (or "_<hash>") as an identifier gives a different, literal name.
    expect(profileInboundChain(hash)).toBe(`pal-pi-${hash}`);
    expect(profileInboundChain(`_${hash}`)).not.toBe(hashed);
    expect(profileInboundChain(hash)).not.toBe(hashed);
  });

  it("prefixes of the different kinds of object are mutually distinct and do not collide with fixed names", () => {
    const prefixes = CHAIN_NAMERS.map(([p]) => p);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    for (const fixed of [...Object.values(BASE_CHAINS), ...Object.values(ENTRY_CHAINS)]) {
      for (const p of prefixes) {
        expect(fixed.startsWith(`${p}-`) || fixed.startsWith(`${p}_`)).toBe(false);
      }
    }
  });

  it("workload and position chains (DESIGN §6.5) are distinct owned names within limits, at the longest list and deepest tree node", () => {
    const names = new Set<string>(Object.values(WORKLOAD_CHAINS));
    const sets = new Set<string>();
    for (const id of SAMPLE_IDS) {
      const key = profileKey(id);
      // A node's prefix is shorter than the keys it groups.
      for (const k of [0, 9, LIMITS.profilesPerEndpoint - 1]) {
        for (const v of Object.keys(WORKLOAD_CHAINS) as (keyof typeof WORKLOAD_CHAINS)[]) {
          names.add(positionChain(v, k));
          names.add(positionChain(v, k, key.slice(0, -1)));
        }
        for (const f of [4, 6] as const) {
          sets.add(positionSet(k, key, f));
          sets.add(positionNodeSet(k, key.slice(0, -1), f));
          sets.add(missingSet(k, f));
        }
      }
    }
    for (const n of names) {
      expect(n).toMatch(OWNED_CHAIN_RE);
      expect(n.length).toBeLessThanOrEqual(CHAIN_MAX);
      expect(n).not.toBe(ADMIT_CHAIN);
      for (const [p] of CHAIN_NAMERS) expect(n.startsWith(`${p}-`) || n.startsWith(`${p}_`)).toBe(false);
    }
    for (const s of sets) {
      expect(s).toMatch(OWNED_SET_RE);
      expect(s.length).toBeLessThanOrEqual(IPSET_MAX);
      expect(setTypeOf(s)).toBe("hash:net,iface");
    }
    // A missing set is not a position set of any position, and node sets are neither.
    expect(missingSet(1, 4)).not.toBe(positionSet(1, "", 4));
  });
});
