// The driver's copy of its desired state, and its defence-in-depth checks on
// everything that reaches an iptables-restore or ipset line (services/driver/sync/desired-state.ts).
import { describe, expect, it } from "vitest";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import type { HostUpdate } from "../../services/calc/desired-state.js";

const chainUp = (name: string, rules: string[], family: 4 | 6 = 4): HostUpdate => ({ type: "chain-update", chain: { table: "filter", family, name, rules } });
const setUp = (name: string, members: string[], family: 4 | 6 = 4): HostUpdate => ({ type: "ipset-update", name, family, members });

describe("DesiredState.apply: building the state", () => {
  it("applies snapshots and deltas", () => {
    const d = new DesiredState();
    d.apply([
      setUp("pal4t-a", ["198.18.0.1", "198.18.0.2"]),
      setUp("pal6t-a", ["2001:db8::1"], 6),
      chainUp("pal-pi-db", ["-j DROP"]),
      chainUp("pal-pi-db", ["-j RETURN"], 6),
      { type: "endpoint-update", key: "hv1/openstack/vm-1/port-1", interfaceName: "tap1" },
    ]);
    d.apply([
      { type: "ipset-delta", name: "pal4t-a", family: 4, added: ["198.18.0.3"], removed: ["198.18.0.1"] },
      chainUp("pal-pi-db", ["-j ACCEPT"]),
    ]);
    expect(d.sets.get("pal4t-a")).toEqual({ family: 4, members: new Set(["198.18.0.2", "198.18.0.3"]) });
    expect(d.chains.get("4:pal-pi-db")?.rules).toEqual(["-j ACCEPT"]);
    expect(d.chains.get("6:pal-pi-db")?.rules).toEqual(["-j RETURN"]);
    expect(d.endpoints.get("hv1/openstack/vm-1/port-1")).toBe("tap1");

    d.apply([
      { type: "chain-remove", table: "filter", family: 4, name: "pal-pi-db" },
      { type: "ipset-remove", name: "pal6t-a", family: 6 },
      { type: "endpoint-remove", key: "hv1/openstack/vm-1/port-1" },
    ]);
    expect(d.chains.has("4:pal-pi-db")).toBe(false);
    expect(d.chains.has("6:pal-pi-db")).toBe(true);
    expect(d.sets.has("pal6t-a")).toBe(false);
    expect(d.endpoints.size).toBe(0);
  });

  it("a delta for an unknown set creates it", () => {
    const d = new DesiredState();
    d.apply([{ type: "ipset-delta", name: "pal4t-b", family: 4, added: ["198.18.0.1"], removed: [] }]);
    expect(d.sets.get("pal4t-b")).toEqual({ family: 4, members: new Set(["198.18.0.1"]) });
  });

  it("accepts CIDR members and host addresses of the set's family", () => {
    const d = new DesiredState();
    expect(() => d.apply([setUp("pal4t-a", ["198.18.0.0/24", "198.18.1.1", "198.18.1.2/32"]), setUp("pal6t-a", ["2001:db8::/64", "2001:db8::1"], 6)])).not.toThrow();
  });

  it("updates before a refused one stay applied; nothing after it is", () => {
    const d = new DesiredState();
    expect(() => d.apply([setUp("pal4t-ok", ["198.18.0.1"]), chainUp("FORWARD", ["-j ACCEPT"]), chainUp("pal-after", ["-j DROP"])])).toThrow();
    expect(d.sets.has("pal4t-ok")).toBe(true);
    expect(d.chains.size).toBe(0);
  });
});

describe("DesiredState.apply: refusals", () => {
  it.each<[string, HostUpdate, RegExp]>([
    // chain names
    ["a built-in chain", chainUp("FORWARD", ["-j ACCEPT"]), /refusing chain name/],
    ["a foreign chain", chainUp("DOCKER", ["-j ACCEPT"]), /refusing chain name/],
    ["just the prefix", chainUp("pal-", []), /refusing chain name/],
    ["a chain name over 28 characters", chainUp(`pal-${"x".repeat(25)}`, []), /refusing chain name/],
    ["a chain name with a space", chainUp("pal-a b", []), /refusing chain name/],
    ["a chain name with a newline", chainUp("pal-a\n-F", []), /refusing chain name/],
    ["prefix without the dash", chainUp("palx", []), /refusing chain name/],
    // rules
    ["a rule with a newline", chainUp("pal-a", ["-j DROP\n-A FORWARD -j ACCEPT"]), /control characters or too long/],
    ["a rule with a carriage return", chainUp("pal-a", ["-j DROP\r"]), /control characters/],
    ["a rule with a NUL", chainUp("pal-a", ["-j DROP\u0000"]), /control characters/],
    ["a rule with DEL", chainUp("pal-a", ["-j DROP\u007f"]), /control characters/],
    ["a rule with a tab", chainUp("pal-a", ["-j\tDROP"]), /control characters/],
    ["a rule over 4096 characters", chainUp("pal-a", [`-m comment --comment ${"x".repeat(4100)}`]), /too long/],
    // set names
    ["a foreign set name", setUp("docker", []), /refusing ipset name/],
    ["just the prefix", setUp("pal", []), /refusing ipset name/],
    ["a set name over 31 characters", setUp(`pal${"x".repeat(29)}`, []), /refusing ipset name/],
    ["a set name with a space", setUp("pal4t-a b", []), /refusing ipset name/],
    ["a delta on a foreign set", { type: "ipset-delta", name: "blacklist", family: 4, added: [], removed: [] }, /refusing ipset name/],
    // members
    ["an IPv6 member in an IPv4 set", setUp("pal4t-a", ["2001:db8::1"]), /refusing member/],
    ["an IPv4 member in an IPv6 set", setUp("pal6t-a", ["198.18.0.1"], 6), /refusing member/],
    ["a member that is not an address", setUp("pal4t-a", ["foo"]), /refusing member/],
    ["an injection attempt as a member", setUp("pal4t-a", ["1.2.3.4\ndestroy pal4t-b"]), /refusing member/],
    ["a member with trailing options", setUp("pal4t-a", ["1.2.3.4 -exist"]), /refusing member/],
    ["a /0 member", setUp("pal4t-a", ["0.0.0.0/0"]), /refusing member/],
    ["a bad member among good ones", setUp("pal4t-a", ["198.18.0.1", "256.0.0.1"]), /refusing member/],
    ["a bad member removed by a delta", { type: "ipset-delta", name: "pal4t-a", family: 4, added: [], removed: ["x"] }, /refusing member/],
    ["a bad member added by a delta", { type: "ipset-delta", name: "pal6t-a", family: 6, added: ["198.18.0.1"], removed: [] }, /refusing member/],
    // endpoints
    ["an interface name over 15 characters", { type: "endpoint-update", key: "k", interfaceName: "tap0123456789abcd" }, /unsafe endpoint/],
    ["an interface name with a space", { type: "endpoint-update", key: "k", interfaceName: "tap 1" }, /unsafe endpoint/],
    ["an endpoint key with a control character", { type: "endpoint-update", key: "hv1/o/w/\u001b[2J", interfaceName: "tap1" }, /unsafe endpoint/],
    // IPv6 MAC checks go into rules (`-s`, `--mac-source`) on bridged ports
    ["an IPv6 MAC check with a lower-case MAC", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { mac: "02:00:00:00:00:0a" } }, /refusing IPv6 MAC check/],
    ["an IPv6 MAC check with an option in its MAC", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { mac: "02:00:00:00:00:0A -j ACCEPT" } }, /refusing IPv6 MAC check/],
    ["an IPv6 MAC entry with an IPv4 source", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { entries: [{ net: "10.0.0.1", mac: "02:00:00:00:00:0A" }] } }, /refusing IPv6 MAC check/],
    ["an IPv6 MAC entry with an option in its source", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { entries: [{ net: "2001:db8::1 -j ACCEPT" }] } }, /refusing IPv6 MAC check/],
    ["an IPv6 MAC check without entries", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { entries: [] } }, /refusing IPv6 MAC check/],
    ["an IPv6 MAC check with too many entries", { type: "endpoint-update", key: "hv1/o/w/e", interfaceName: "tap1", mac6: { entries: Array.from({ length: 513 }, (_, i) => ({ net: `2001:db8::${i.toString(16)}` })) } }, /refusing IPv6 MAC check/],
  ])("refuses %s", (_what, u, msg) => {
    const d = new DesiredState();
    expect(() => d.apply([u])).toThrow(msg);
    expect(d.chains.size + d.sets.size + d.endpoints.size + d.endpointMacs6.size).toBe(0);
  });

  it("keeps an endpoint's IPv6 MAC check until it has none or is removed", () => {
    const d = new DesiredState();
    const entries = [{ net: "2001:db8::1", mac: "02:00:00:00:00:0A" }, { net: "2001:db8:1::/64" }];
    d.apply([{ type: "endpoint-update", key: "h/o/w/e", interfaceName: "tap1", mac6: { entries } }]);
    expect(d.endpointMacs6.get("h/o/w/e")).toEqual({ entries });
    d.apply([{ type: "endpoint-update", key: "h/o/w/e", interfaceName: "tap1" }]);
    expect(d.endpointMacs6.has("h/o/w/e")).toBe(false);
    d.apply([{ type: "endpoint-update", key: "h/o/w/e", interfaceName: "tap1", mac6: { mac: "02:00:00:00:00:0B" } }, { type: "endpoint-remove", key: "h/o/w/e" }]);
    expect(d.endpointMacs6.size + d.endpoints.size).toBe(0);
  });

  it("accepts the longest legal names", () => {
    const d = new DesiredState();
    d.apply([chainUp(`pal-${"x".repeat(24)}`, ["-j DROP"]), setUp(`pal${"x".repeat(28)}`, [])]);
    expect(d.chains.size).toBe(1);
    expect(d.sets.size).toBe(1);
  });
});
