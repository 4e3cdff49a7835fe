// UpdateCoalescer: per-key coalescing and the documented drain order (DESIGN §5.7).
import { describe, expect, it } from "vitest";
import { UpdateCoalescer } from "../../services/calc/update-coalescer.js";
import type { ChainDef, HostUpdate } from "../../services/calc/desired-state.js";

const chain = (name: string, rules: string[] = ["-j DROP"], family: 4 | 6 = 4): ChainDef => ({ table: "filter", family, name, rules });
const full = (name: string, members: string[], family: 4 | 6 = 4): HostUpdate => ({ type: "ipset-update", name, family, members });
const delta = (name: string, added: string[], removed: string[], family: 4 | 6 = 4): HostUpdate => ({ type: "ipset-delta", name, family, added, removed });
const setRemove = (name: string, family: 4 | 6 = 4): HostUpdate => ({ type: "ipset-remove", name, family });
const chainUp = (name: string, rules?: string[], family: 4 | 6 = 4): HostUpdate => ({ type: "chain-update", chain: chain(name, rules, family) });
const chainRm = (name: string, family: 4 | 6 = 4): HostUpdate => ({ type: "chain-remove", table: "filter", family, name });

function drained(...us: HostUpdate[]): HostUpdate[] {
  const c = new UpdateCoalescer();
  c.pushAll(us);
  return c.drain();
}

/** Sorts member lists so assertions do not depend on Set iteration order. */
function norm(us: HostUpdate[]): HostUpdate[] {
  return us.map((u) => {
    if (u.type === "ipset-update") return { ...u, members: [...u.members].sort() };
    if (u.type === "ipset-delta") return { ...u, added: [...u.added].sort(), removed: [...u.removed].sort() };
    return u;
  });
}

describe("UpdateCoalescer: drain order", () => {
  it("set upserts, chain upserts, endpoint updates, chain removes, set removes — whatever the push order", () => {
    const out = drained(
      setRemove("pal4t-gone"),
      chainRm("pal-pi-gone"),
      { type: "endpoint-remove", key: "h/o/w/old" },
      chainUp("pal-pi-new"),
      delta("pal4t-delta", ["198.18.0.9"], []),
      { type: "endpoint-update", key: "h/o/w/new", interfaceName: "tap1" },
      full("pal4t-new", ["198.18.0.1"]),
      chainUp("pal-tw-tap1"),
    );
    expect(out.map((u) => u.type)).toEqual([
      "ipset-delta", "ipset-update",
      "chain-update", "chain-update",
      "endpoint-remove", "endpoint-update",
      "chain-remove",
      "ipset-remove",
    ]);
  });

  it("drain empties the coalescer", () => {
    const c = new UpdateCoalescer();
    c.push(chainUp("pal-a"));
    expect(c.size).toBe(1);
    expect(c.drain()).toHaveLength(1);
    expect(c.size).toBe(0);
    expect(c.pendingWeight).toBe(0);
    expect(c.drain()).toEqual([]);
  });

  it("keys are per family: the same name in IPv4 and IPv6 are different sets and chains", () => {
    const out = drained(full("pal4t-x", ["198.18.0.1"], 4), full("pal4t-x", ["2001:db8::1"], 6), chainUp("pal-a", ["-j DROP"], 4), chainRm("pal-a", 6));
    expect(out).toHaveLength(4);
  });
});

describe("UpdateCoalescer: ipsets", () => {
  it("full + delta merges into full", () => {
    expect(norm(drained(full("s", ["a", "b"]), delta("s", ["c"], ["a"])))).toEqual([full("s", ["b", "c"])]);
  });

  it("full + delta that re-adds a removed member keeps it", () => {
    expect(norm(drained(full("s", ["a"]), delta("s", [], ["a"]), delta("s", ["a"], [])))).toEqual([full("s", ["a"])]);
  });

  it("delta + delta: add then remove of the same member cancels to a removal", () => {
    expect(norm(drained(delta("s", ["a"], []), delta("s", [], ["a"])))).toEqual([delta("s", [], ["a"])]);
  });

  it("delta + delta: remove then add of the same member becomes an addition", () => {
    expect(norm(drained(delta("s", [], ["a"]), delta("s", ["a"], [])))).toEqual([delta("s", ["a"], [])]);
  });

  it("delta + delta: unrelated members accumulate", () => {
    expect(norm(drained(delta("s", ["a"], ["x"]), delta("s", ["b"], ["y"])))).toEqual([delta("s", ["a", "b"], ["x", "y"])]);
  });

  it("the merged delta equals applying the deltas one after another, for any base", () => {
    const deltas: [string[], string[]][] = [[["a", "b"], ["c"]], [["c"], ["a"]], [[], ["b", "d"]], [["d", "e"], []], [["a"], ["e"]]];
    for (const base of [[], ["a"], ["b", "c", "d"], ["a", "b", "c", "d", "e"]]) {
      const seq = new Set(base);
      for (const [add, rm] of deltas) { for (const m of rm) seq.delete(m); for (const m of add) seq.add(m); }
      const [merged] = drained(...deltas.map(([a, r]) => delta("s", a, r)));
      expect(merged!.type).toBe("ipset-delta");
      const m = merged as Extract<HostUpdate, { type: "ipset-delta" }>;
      const once = new Set(base);
      for (const x of m.removed) once.delete(x);
      for (const x of m.added) once.add(x);
      expect([...once].sort()).toEqual([...seq].sort());
      // a member is never both added and removed
      expect(m.added.filter((x) => m.removed.includes(x))).toEqual([]);
    }
  });

  it("an empty delta is not sent", () => {
    expect(drained(delta("s", [], []))).toEqual([]);
  });

  it("remove then full -> full", () => {
    expect(drained(setRemove("s"), full("s", ["a"]))).toEqual([full("s", ["a"])]);
  });

  it("full then remove -> remove", () => {
    expect(drained(full("s", ["a"]), setRemove("s"))).toEqual([setRemove("s")]);
  });

  it("delta then full -> the full replaces the delta", () => {
    expect(drained(delta("s", ["a"], []), full("s", ["b"]))).toEqual([full("s", ["b"])]);
  });

  it("delta then remove -> remove", () => {
    expect(drained(delta("s", ["a"], []), setRemove("s"))).toEqual([setRemove("s")]);
  });

  it("remove then delta -> the removal stands", () => {
    expect(drained(setRemove("s"), delta("s", ["a"], []))).toEqual([setRemove("s")]);
  });

  it("full then full -> the latest full", () => {
    expect(drained(full("s", ["a"]), full("s", ["b"]))).toEqual([full("s", ["b"])]);
  });

  it("the coalesced full does not alias the pushed members array", () => {
    const members = ["a"];
    const c = new UpdateCoalescer();
    c.push(full("s", members));
    c.push(delta("s", ["b"], []));
    c.drain();
    expect(members).toEqual(["a"]);
  });
});

describe("UpdateCoalescer: chains and endpoints", () => {
  it("the latest chain update wins", () => {
    expect(drained(chainUp("pal-a", ["-j DROP"]), chainUp("pal-a", ["-j RETURN"]), chainUp("pal-a", ["-j ACCEPT"]))).toEqual([
      chainUp("pal-a", ["-j ACCEPT"]),
    ]);
  });

  it("update then remove -> remove; remove then update -> update", () => {
    expect(drained(chainUp("pal-a"), chainRm("pal-a"))).toEqual([chainRm("pal-a")]);
    expect(drained(chainRm("pal-a"), chainUp("pal-a", ["-j RETURN"]))).toEqual([chainUp("pal-a", ["-j RETURN"])]);
  });

  it("the latest endpoint event wins", () => {
    expect(drained(
      { type: "endpoint-update", key: "k", interfaceName: "tap1" },
      { type: "endpoint-update", key: "k", interfaceName: "tap2" },
    )).toEqual([{ type: "endpoint-update", key: "k", interfaceName: "tap2" }]);
    expect(drained(
      { type: "endpoint-update", key: "k", interfaceName: "tap1" },
      { type: "endpoint-remove", key: "k" },
    )).toEqual([{ type: "endpoint-remove", key: "k" }]);
  });

  it("pending state is bounded by the number of keys, not the number of pushes", () => {
    const c = new UpdateCoalescer();
    for (let i = 0; i < 1000; i++) {
      c.push(chainUp(`pal-c${i % 5}`, [`-j DROP`, `# ${i}`]));
      c.push(delta(`s${i % 3}`, [`198.18.0.${i % 250}`], []));
      c.push({ type: "endpoint-update", key: `k${i % 2}`, interfaceName: "tap1" });
    }
    expect(c.size).toBe(5 + 3 + 2);
    expect(c.drain()).toHaveLength(10);
  });

  it("pendingWeight counts members and rules pushed", () => {
    const c = new UpdateCoalescer();
    c.push(full("s", ["a", "b", "c"]));
    c.push(chainUp("pal-a", ["x", "y"]));
    c.push(delta("s", ["d"], ["a"]));
    expect(c.pendingWeight).toBe(3 + 2 + 2);
  });
});
