// The sync wire's endpoint update (services/contract/sync-wire.ts): an
// endpoint's IPv6 MAC check crosses the real protobuf encoding intact, and
// a message that says two checks at once is refused (DESIGN §6.3).
import { describe, expect, it } from "vitest";
import type { HostUpdate } from "../../services/contract/host-update.js";
import { updateFromPb, updateToPb } from "../../services/contract/sync-wire.js";
import { Update } from "../../services/gen/palisade/sync/v1/sync.js";

const overTheWire = (u: HostUpdate) => updateFromPb(Update.decode(Update.encode(updateToPb(u)).finish()));

describe("sync wire: endpoint updates", () => {
  it.each<[string, HostUpdate]>([
    ["no MAC check", { type: "endpoint-update", key: "h/o/w/e", interfaceName: "tapa" }],
    ["one MAC", { type: "endpoint-update", key: "h/o/w/e", interfaceName: "tapa", mac6: { mac: "02:00:00:00:00:0A" } }],
    ["per-source entries, one of them any MAC", { type: "endpoint-update", key: "h/o/w/e", interfaceName: "tapa", mac6: { entries: [{ net: "2001:db8::1", mac: "02:00:00:00:00:0A" }, { net: "2001:db8:1::/64" }] } }],
  ])("%s arrives as sent", (_what, u) => {
    expect(overTheWire(u)).toEqual(u);
  });

  it("refuses an update carrying both a MAC and entries", () => {
    const pb = updateToPb({ type: "endpoint-update", key: "h/o/w/e", interfaceName: "tapa", mac6: { mac: "02:00:00:00:00:0A" } });
    if (pb.update?.$case !== "endpointUpdate") throw new Error("not an endpoint update");
    pb.update.value.ipv6MacEntries = [{ net: "2001:db8::1", mac: "" }];
    expect(() => updateFromPb(pb)).toThrow(/both ipv6_mac and ipv6_mac_entries/);
  });
});
