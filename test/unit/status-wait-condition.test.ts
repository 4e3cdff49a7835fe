// `palisadectl wait`: which hosts count as behind revision R, and the message
// that says why (issue #19: "behind: sim-h12 (applied 6274)" did not say the
// host was behind only because it was not in sync).
import { describe, expect, it } from "vitest";
import { behindReasons, describeBehind, hostsBehind } from "../../services/cli/wait-condition.js";
import type { HostStatus } from "../../services/contract/status.js";

const h = (hostname: string, o: Partial<HostStatus> = {}): HostStatus => ({
  hostname, connected: true, inSync: true, appliedRevision: 10, lastError: "", lastApplyMs: 1, driverVersion: "t", iptablesBackend: "nft",
  controller: "r1", updatedUnixMs: 1, connectedUnixMs: 1, ...o,
});

describe("wait condition", () => {
  it("counts a connected host behind when it has not applied R, is not in sync, or its last apply failed", () => {
    const hosts = [h("ok"), h("old", { appliedRevision: 9 }), h("unsynced", { inSync: false }), h("failing", { lastError: "boom" }), h("gone", { connected: false, appliedRevision: 1 })];
    expect(hostsBehind(hosts, 10).map((x) => x.hostname)).toEqual(["old", "unsynced", "failing"]);
  });

  it("counts a refused host (not connected, with the refusal as its error) behind, whatever it applied", () => {
    const tooOld = "driver too old: lacks features [set-layout]; upgrade palisade-driver";
    const hosts = [h("ok"), h("frozen", { connected: false, inSync: false, appliedRevision: 0, lastError: tooOld })];
    expect(hostsBehind(hosts, 10).map((x) => x.hostname)).toEqual(["frozen"]);
    expect(describeBehind(hostsBehind(hosts, 10), 10)).toBe(`frozen (applied 0: refused by the controller: ${tooOld})`);
  });

  it("says why each host is behind, including a host that applied R but is not in sync", () => {
    expect(describeBehind([h("sim-h12", { appliedRevision: 6274, inSync: false })], 6274))
      .toBe("sim-h12 (applied 6274: not in sync (no successful apply since its driver connected))");
    expect(describeBehind([h("a", { appliedRevision: 5 }), h("b", { lastError: "Chain 'x' does not exist" })], 10))
      .toBe("a (applied 5: revision 10 not applied yet), b (applied 10: last apply failed: Chain 'x' does not exist)");
    expect(behindReasons(h("c", { connected: false, inSync: false, appliedRevision: 3 }), 4)).toEqual(["disconnected"]);
    expect(behindReasons(h("d"), 10)).toEqual([]);
  });
});
