// Profile rules -> iptables rule specs (services/calc/render-rules.ts).
import { describe, expect, it } from "vitest";
import { chunkPorts, renderProfile, renderRules, ruleMatchSpecs, acceptMarkSpecs } from "../../services/calc/render-rules.js";
import { DEFAULT_CALC_CONFIG } from "../../services/calc/calc-config.js";
import type { Match, PortRange, Rule } from "../../services/model/types.js";

const cfg = DEFAULT_CALC_CONFIG;
const SET_MARK = "-j MARK --set-xmark 0x1000000/0x1000000";
const RETURN_IF_MARKED = "-m mark --mark 0x1000000/0x1000000 -j RETURN";

const rule = (match: Match = {}, negated: Match = {}, extra: Partial<Rule> = {}): Rule => ({ action: "allow", match, negated, ...extra });
const ports = (...ps: (number | [number, number])[]): PortRange[] =>
  ps.map((p) => (typeof p === "number" ? { first: p, last: p } : { first: p[0], last: p[1] }));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("acceptMarkSpecs", () => {
  it("renders the accept mark from the config", () => {
    expect(acceptMarkSpecs(cfg)).toEqual({
      set: SET_MARK,
      clear: "-j MARK --set-xmark 0x0/0x1000000",
      isSet: "-m mark --mark 0x1000000/0x1000000",
      notSet: "-m mark ! --mark 0x1000000/0x1000000",
    });
    expect(acceptMarkSpecs({ ...cfg, acceptMark: 0x4 }).set).toBe("-j MARK --set-xmark 0x4/0x4");
  });
});

describe("ruleMatchSpecs", () => {
  it.each<[string, Rule, 4 | 6, string[]]>([
    ["empty rule", rule(), 4, [""]],
    ["protocol name", rule({ protocol: "tcp" }), 4, ["-p tcp"]],
    ["protocol by number, named when known", rule({ protocol: "17" }), 4, ["-p udp"]],
    ["protocol by number, unknown", rule({ protocol: "47" }), 6, ["-p 47"]],
    ["icmpv6 by number in IPv6", rule({ protocol: "58" }), 6, ["-p icmpv6"]],
    ["nets", rule({ srcNet: "10.0.0.0/8", dstNet: "198.18.0.0/15" }), 4, ["-s 10.0.0.0/8 -d 198.18.0.0/15"]],
    ["v6 nets", rule({ srcNet: "2001:db8::/32" }), 6, ["-s 2001:db8::/32"]],
    ["src tag (v4)", rule({ srcTag: "db-user" }), 4, ["-m set --match-set pal4t-db-user src"]],
    ["dst tag (v6)", rule({ dstTag: "web" }), 6, ["-m set --match-set pal6t-web dst"]],
    [
      "the seed rule: tcp from tag to port",
      rule({ protocol: "tcp", srcTag: "db-user", dstPorts: ports(5432) }), 4,
      ["-p tcp -m set --match-set pal4t-db-user src -m multiport --dports 5432"],
    ],
    [
      "ports and ranges",
      rule({ protocol: "udp", srcPorts: ports(53, [1000, 2000]), dstPorts: ports([8000, 8080], 9) }), 4,
      ["-p udp -m multiport --sports 53,1000:2000 -m multiport --dports 8000:8080,9"],
    ],
    [
      "negations",
      rule({}, { protocol: "udp", srcNet: "10.1.0.0/16", dstNet: "10.2.0.0/16", srcTag: "a", dstTag: "b" }), 4,
      ["! -p udp ! -s 10.1.0.0/16 ! -d 10.2.0.0/16 -m set ! --match-set pal4t-a src -m set ! --match-set pal4t-b dst"],
    ],
    [
      "negated ports",
      rule({ protocol: "tcp" }, { srcPorts: ports(1), dstPorts: ports([10, 20]) }), 4,
      ["-p tcp -m multiport ! --sports 1 -m multiport ! --dports 10:20"],
    ],
    [
      // iptables allows one -s per rule: the negated net goes through iprange.
      "positive and negated net together (iprange for the negation)",
      rule({ protocol: "tcp", srcNet: "10.0.0.0/8", dstPorts: ports(80) }, { srcNet: "10.9.0.0/16" }), 4,
      ["-p tcp -s 10.0.0.0/8 -m iprange ! --src-range 10.9.0.0-10.9.255.255 -m multiport --dports 80"],
    ],
    [
      "positive and negated IPv6 destination nets",
      rule({ dstNet: "2001:db8::/32" }, { dstNet: "2001:db8:1::/48" }), 6,
      ["-d 2001:db8::/32 -m iprange ! --dst-range 2001:db8:1::-2001:db8:1:ffff:ffff:ffff:ffff:ffff"],
    ],
    ["a negated net alone stays ! -s", rule({}, { srcNet: "10.9.0.0/16" }), 4, ["! -s 10.9.0.0/16"]],
    ["protocol and a different negated protocol: the negation is implied", rule({ protocol: "tcp" }, { protocol: "udp" }), 4, ["-p tcp"]],
    ["protocol and the same negated protocol: never matches, no line", rule({ protocol: "tcp" }, { protocol: "6" }), 4, []],
    ["icmp type", rule({ protocol: "icmp", icmpType: 8 }), 4, ["-p icmp -m icmp --icmp-type 8"]],
    ["icmp type/code", rule({ protocol: "icmp", icmpType: 3, icmpCode: 4 }), 4, ["-p icmp -m icmp --icmp-type 3/4"]],
    ["icmp type 0 code 0", rule({ protocol: "icmp", icmpType: 0, icmpCode: 0 }), 4, ["-p icmp -m icmp --icmp-type 0/0"]],
    ["negated icmp type", rule({ protocol: "icmp" }, { icmpType: 8 }), 4, ["-p icmp -m icmp ! --icmp-type 8"]],
    ["icmpv6 type", rule({ protocol: "icmpv6", icmpType: 128 }), 6, ["-p icmpv6 -m icmp6 --icmpv6-type 128"]],
    ["icmpv6 type/code, negated", rule({ protocol: "icmpv6" }, { icmpType: 1, icmpCode: 3 }), 6, ["-p icmpv6 -m icmp6 ! --icmpv6-type 1/3"]],
  ])("%s", (_what, r, family, expected) => {
    expect(ruleMatchSpecs(r, family)).toEqual(expected);
  });

  it("a positive list of 20 ports yields 2 spec lines (OR)", () => {
    const r = rule({ protocol: "tcp", dstPorts: ports(...range(1, 20)) });
    expect(ruleMatchSpecs(r, 4)).toEqual([
      "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
      "-p tcp -m multiport --dports 16,17,18,19,20",
    ]);
  });

  it("a negated list of 20 ports yields ONE line with two negated multiport matches (AND)", () => {
    const r = rule({ protocol: "tcp" }, { dstPorts: ports(...range(1, 20)) });
    expect(ruleMatchSpecs(r, 4)).toEqual([
      "-p tcp -m multiport ! --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -m multiport ! --dports 16,17,18,19,20",
    ]);
  });

  it("long positive source and destination lists multiply (cartesian product)", () => {
    const r = rule({ protocol: "tcp", srcPorts: ports(...range(1, 16)), dstPorts: ports(...range(101, 131)) });
    const specs = ruleMatchSpecs(r, 4);
    // 16 source ports -> 2 chunks; 31 destination ports -> 3 chunks.
    expect(specs).toHaveLength(6);
    expect(new Set(specs).size).toBe(6);
    for (const s of specs) {
      expect(s).toMatch(/^-p tcp -m multiport --sports [\d,]+ -m multiport --dports [\d,]+$/);
    }
    expect(specs[0]).toBe(`-p tcp -m multiport --sports ${range(1, 15).join(",")} -m multiport --dports ${range(101, 115).join(",")}`);
    expect(specs[5]).toBe("-p tcp -m multiport --sports 16 -m multiport --dports 131");
  });
});

describe("chunkPorts", () => {
  it("15 single ports fit one multiport match", () => {
    expect(chunkPorts(ports(...range(1, 15)))).toHaveLength(1);
  });

  it("the 16th port starts a new chunk", () => {
    const c = chunkPorts(ports(...range(1, 16)));
    expect(c.map((x) => x.length)).toEqual([15, 1]);
    expect(c[1]).toEqual([{ first: 16, last: 16 }]);
  });

  it("a range costs 2 slots", () => {
    // 7 ranges = 14 slots, + 1 single = 15: fits.
    const sevenRanges = Array.from({ length: 7 }, (_, i) => [i * 10, i * 10 + 5] as [number, number]);
    expect(chunkPorts(ports(...sevenRanges, 999))).toHaveLength(1);
    // 7 ranges + 1 range = 16 slots: the last range moves to a second chunk.
    expect(chunkPorts(ports(...sevenRanges, [900, 901])).map((x) => x.length)).toEqual([7, 1]);
    // 14 singles + 1 range = 16: the range moves.
    expect(chunkPorts(ports(...range(1, 14), [100, 200])).map((x) => x.length)).toEqual([14, 1]);
  });

  it("keeps order and every port, and no chunk exceeds 15 slots", () => {
    const input = ports(...range(1, 40).map((i) => (i % 3 === 0 ? ([i * 100, i * 100 + 1] as [number, number]) : i)));
    const chunks = chunkPorts(input);
    expect(chunks.flat()).toEqual(input);
    for (const c of chunks) {
      const cost = c.reduce((n, p) => n + (p.first === p.last ? 1 : 2), 0);
      expect(cost).toBeLessThanOrEqual(15);
      expect(c.length).toBeGreaterThan(0);
    }
  });

  it("an empty list yields no chunks", () => {
    expect(chunkPorts([])).toEqual([]);
  });
});

describe("renderRules", () => {
  it("allow: MARK line(s) then one RETURN-if-marked line", () => {
    expect(renderRules([rule({ protocol: "tcp", dstPorts: ports(22) })], 4, cfg)).toEqual([
      `-p tcp -m multiport --dports 22 ${SET_MARK}`,
      RETURN_IF_MARKED,
    ]);
    expect(renderRules([rule()], 6, cfg)).toEqual([SET_MARK, RETURN_IF_MARKED]);
  });

  it("allow with a split port list: one MARK per line, a single RETURN", () => {
    expect(renderRules([rule({ protocol: "tcp", dstPorts: ports(...range(1, 16)) })], 4, cfg)).toEqual([
      `-p tcp -m multiport --dports ${range(1, 15).join(",")} ${SET_MARK}`,
      `-p tcp -m multiport --dports 16 ${SET_MARK}`,
      RETURN_IF_MARKED,
    ]);
  });

  it("deny: -j DROP on each line, no MARK", () => {
    expect(renderRules([rule({ srcNet: "10.0.0.0/8" }, {}, { action: "deny" })], 4, cfg)).toEqual(["-s 10.0.0.0/8 -j DROP"]);
    expect(renderRules([rule({}, {}, { action: "deny" })], 4, cfg)).toEqual(["-j DROP"]);
    expect(renderRules([rule({ protocol: "udp", dstPorts: ports(...range(1, 16)) }, {}, { action: "deny" })], 6, cfg)).toEqual([
      `-p udp -m multiport --dports ${range(1, 15).join(",")} -j DROP`,
      "-p udp -m multiport --dports 16 -j DROP",
    ]);
  });

  it("keeps rule order (first match decides)", () => {
    const rules = [
      rule({ srcNet: "10.1.0.0/16" }, {}, { action: "deny" }),
      rule({ srcNet: "10.0.0.0/8" }),
    ];
    expect(renderRules(rules, 4, cfg)).toEqual(["-s 10.1.0.0/16 -j DROP", `-s 10.0.0.0/8 ${SET_MARK}`, RETURN_IF_MARKED]);
  });

  it("renders a rule only in its family", () => {
    const rules = [
      rule({ srcNet: "10.0.0.0/8" }),                       // v4 only (CIDR)
      rule({}, { dstNet: "2001:db8::/32" }),                 // v6 only (negated CIDR)
      rule({ protocol: "icmp" }),                            // v4 only
      rule({ protocol: "icmpv6" }),                          // v6 only
      rule({}, {}, { ipVersion: 6 }),                        // v6 only
      rule({ protocol: "tcp" }, {}, { action: "deny" }),     // both
      rule({ srcNet: "10.0.0.0/8", dstNet: "2001:db8::/32" }), // mixed: neither (validation refuses it)
    ];
    expect(renderRules(rules, 4, cfg)).toEqual([
      `-s 10.0.0.0/8 ${SET_MARK}`, RETURN_IF_MARKED,
      `-p icmp ${SET_MARK}`, RETURN_IF_MARKED,
      "-p tcp -j DROP",
    ]);
    expect(renderRules(rules, 6, cfg)).toEqual([
      `! -d 2001:db8::/32 ${SET_MARK}`, RETURN_IF_MARKED,
      `-p icmpv6 ${SET_MARK}`, RETURN_IF_MARKED,
      SET_MARK, RETURN_IF_MARKED,
      "-p tcp -j DROP",
    ]);
  });

  it("an empty rule list renders an empty chain (the class chain's DROP decides)", () => {
    expect(renderRules([], 4, cfg)).toEqual([]);
  });
});

describe("renderProfile", () => {
  it("renders inbound and outbound chains in both families and lists the sets used per family", () => {
    const r = renderProfile({
      id: "db",
      tags: ["db"],
      inboundRules: [
        rule({ protocol: "tcp", srcTag: "db-user", dstPorts: ports(5432) }),
        rule({ srcNet: "10.0.0.0/8" }, { srcTag: "banned" }),
      ],
      outboundRules: [rule({}, {}, { ipVersion: 6, action: "allow" }), rule({ dstTag: "v6only" }, {}, { ipVersion: 6 })],
      labels: {},
    }, cfg);
    // With each chain its mirrored twin (DESIGN §6.5, "Reply-direction re-check chains").
    expect(r.chains.map((c) => `${c.family}:${c.name}`)).toEqual([
      "4:pal-pi-db", "4:pal-po-db", "4:pal-qi-db", "4:pal-qo-db", "6:pal-pi-db", "6:pal-po-db", "6:pal-qi-db", "6:pal-qo-db",
    ]);
    expect(r.chains.every((c) => c.table === "filter")).toBe(true);
    const rules = (key: string) => r.chains.find((c) => `${c.family}:${c.name}` === key)!.rules;
    expect(rules("4:pal-pi-db")).toEqual([
      `-p tcp -m set --match-set pal4t-db-user src -m multiport --dports 5432 ${SET_MARK}`, RETURN_IF_MARKED,
      `-s 10.0.0.0/8 -m set ! --match-set pal4t-banned src ${SET_MARK}`, RETURN_IF_MARKED,
    ]);
    expect(rules("4:pal-po-db")).toEqual([]);
    expect(rules("6:pal-pi-db")).toEqual([
      `-p tcp -m set --match-set pal6t-db-user src -m multiport --dports 5432 ${SET_MARK}`, RETURN_IF_MARKED,
    ]);
    expect(rules("6:pal-po-db")).toEqual([SET_MARK, RETURN_IF_MARKED, `-m set --match-set pal6t-v6only dst ${SET_MARK}`, RETURN_IF_MARKED]);
    // Mirrored: source and destination (nets, tags, ports) swapped, same sets.
    expect(rules("4:pal-qi-db")).toEqual([
      `-p tcp -m set --match-set pal4t-db-user dst -m multiport --sports 5432 ${SET_MARK}`, RETURN_IF_MARKED,
      `-d 10.0.0.0/8 -m set ! --match-set pal4t-banned dst ${SET_MARK}`, RETURN_IF_MARKED,
    ]);
    expect(rules("4:pal-qo-db")).toEqual([]);
    expect(rules("6:pal-qi-db")).toEqual([
      `-p tcp -m set --match-set pal6t-db-user dst -m multiport --sports 5432 ${SET_MARK}`, RETURN_IF_MARKED,
    ]);
    expect(rules("6:pal-qo-db")).toEqual([SET_MARK, RETURN_IF_MARKED, `-m set --match-set pal6t-v6only src ${SET_MARK}`, RETURN_IF_MARKED]);
    // The v4-only rule's negated tag is referenced only in IPv4; the v6-only tag only in IPv6.
    expect(new Map(r.sets)).toEqual(new Map([
      ["pal4t-db-user", { tag: "db-user", family: 4 }],
      ["pal4t-banned", { tag: "banned", family: 4 }],
      ["pal6t-db-user", { tag: "db-user", family: 6 }],
      ["pal6t-v6only", { tag: "v6only", family: 6 }],
    ]));
  });

  it("mirrored chains: an ICMP query rule answers with its reply type, a non-query ICMP rule is left out", () => {
    const r = renderProfile({
      id: "icmp", tags: [], labels: {},
      inboundRules: [
        rule({ protocol: "icmp", icmpType: 8 }, {}, { action: "allow" }),
        rule({ protocol: "icmp", icmpType: 3 }, {}, { action: "deny" }),
      ],
      outboundRules: [],
    }, cfg);
    const rules = (key: string) => r.chains.find((c) => `${c.family}:${c.name}` === key)!.rules;
    expect(rules("4:pal-pi-icmp")).toEqual([`-p icmp -m icmp --icmp-type 8 ${SET_MARK}`, RETURN_IF_MARKED, "-p icmp -m icmp --icmp-type 3 -j DROP"]);
    expect(rules("4:pal-qi-icmp")).toEqual([`-p icmp -m icmp --icmp-type 0 ${SET_MARK}`, RETURN_IF_MARKED]);
  });

  it("a profile's own tags are not sets it references", () => {
    const r = renderProfile({ id: "app", tags: ["db-user"], inboundRules: [], outboundRules: [], labels: {} }, cfg);
    expect(r.sets.size).toBe(0);
  });
});
