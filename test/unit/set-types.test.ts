// An ipset's type follows from its name (DESIGN §6.2): the names the MAC
// check of networks and pairs adds (§6.5) get the types the layout needs, and
// the driver's check of incoming sets accepts their members.
import { describe, expect, it } from "vitest";
import { macSetRange, setTypeOf } from "../../services/contract/dataplane-names.js";
import { endpointMacSet, macScopeNodeSet, macSet, networkMacListSet, networkScopeSet } from "../../services/calc/names.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";

describe("set types of network-scoped MAC sets", () => {
  it("names give types and ranges", () => {
    const net = "3f1c2a9e-7d0b-4c55-9a51-0e4f1f0c2b11";
    expect(setTypeOf(macSet("10.1.2.3"))).toBe("bitmap:ip,mac");
    expect(setTypeOf(macSet("10.1.2.3", net))).toBe("bitmap:ip,mac");
    expect(macSetRange(macSet("10.1.2.3", net))).toBe("10.1.0.0/16");
    expect(setTypeOf("pal4mac")).toBe("list:set");
    expect(setTypeOf(networkMacListSet(net))).toBe("list:set");
    for (const n of [networkScopeSet(net), endpointMacSet("tap1"), macScopeNodeSet("wab")]) expect(setTypeOf(n)).toBe("hash:net,iface");
    for (const n of [macSet("255.255.0.0", net), networkMacListSet(net), networkScopeSet(net)]) expect(n.length).toBeLessThanOrEqual(31);
  });

  it("the driver accepts a network's list, MAC set and scope set as the controller sends them", () => {
    const net = "net-a";
    const s = new DesiredState();
    s.apply([
      { type: "ipset-update", name: networkMacListSet(net), family: 4, members: [macSet("10.0.0.5", net)] },
      { type: "ipset-update", name: macSet("10.0.0.5", net), family: 4, members: ["10.0.0.5,02:00:00:00:00:01"] },
      { type: "ipset-update", name: networkScopeSet(net), family: 4, members: ["10.0.0.5,tap1"] },
      { type: "ipset-update", name: endpointMacSet("tap1"), family: 4, members: ["10.244.0.0/16,tap1"] },
    ]);
    expect(() => s.apply([{ type: "ipset-update", name: macSet("10.0.0.5", net), family: 4, members: ["10.1.0.5,02:00:00:00:00:01"] }])).toThrow(/refusing member/);
  });
});
