// The reader's merge of host records and per-replica progress (DESIGN §9.3).
import { describe, expect, it } from "vitest";
import { createKeys } from "../../services/controller/etcd-keys.js";
import { StatusView, decodeProgress, encodeProgress } from "../../services/controller/status-view.js";
import type { HostStatus } from "../../services/gen/palisade/status/v1/status.js";

const keys = createKeys("/p");
const record = (hostname: string, controller: string, appliedRevision = 0): HostStatus => ({
  hostname, connected: true, inSync: true, appliedRevision, lastError: "", lastApplyMs: 1, driverVersion: "t", iptablesBackend: "nft",
  controller, updatedUnixMs: 1, connectedUnixMs: 1,
});

describe("status view", () => {
  it("progress round-trips, grouped by revision", () => {
    const m = new Map([["a", 5], ["b", 5], ["c", 7]]);
    const json = encodeProgress(m);
    expect(JSON.parse(json)).toEqual({ v: 1, revisions: { 5: ["a", "b"], 7: ["c"] } });
    expect(decodeProgress(json)).toEqual(m);
    expect(decodeProgress('{"v":1,"revisions":{"x":["a"],"3":"notalist","4":["b",1]}}')).toEqual(new Map([["b", 4]]));
  });

  it("a host's applied revision is the larger of its record's and its own replica's progress", () => {
    const v = new StatusView(keys);
    v.apply(`${keys.hostStatus}h1`, JSON.stringify(record("h1", "r1", 3)));
    v.apply(`${keys.hostStatus}h2`, JSON.stringify(record("h2", "r2", 9)));
    expect(v.host("h1")!.appliedRevision).toBe(3);
    const c = v.apply(`${keys.progress}r1`, encodeProgress(new Map([["h1", 10], ["h2", 50]])));
    // Only h1 is served by r1: h2's entry there (stale, from before a failover) is ignored.
    expect(c.hosts).toEqual(["h1"]);
    expect(v.host("h1")!.appliedRevision).toBe(10);
    expect(v.host("h2")!.appliedRevision).toBe(9);
    // Progress never lowers a record's revision.
    v.apply(`${keys.progress}r2`, encodeProgress(new Map([["h2", 4]])));
    expect(v.host("h2")!.appliedRevision).toBe(9);
    // The replica's progress goes (lease expired): back to the record.
    const gone = v.apply(`${keys.progress}r1`, undefined);
    expect(gone.hosts).toEqual(["h1"]);
    expect(v.host("h1")!.appliedRevision).toBe(3);
  });

  it("deletions and undecodable values remove, and are reported once", () => {
    const v = new StatusView(keys);
    v.apply(`${keys.hostStatus}h1`, JSON.stringify(record("h1", "r1")));
    v.apply(`${keys.endpointStatus}h1/o/w/e`, JSON.stringify({ endpointKey: "h1/o/w/e" }));
    expect(v.apply(`${keys.hostStatus}h1`, "{not json").removedHosts).toEqual(["h1"]);
    expect(v.apply(`${keys.hostStatus}h1`, undefined).removedHosts).toEqual([]);
    expect(v.apply(`${keys.endpointStatus}h1/o/w/e`, undefined).removedEndpoints).toEqual(["h1/o/w/e"]);
    expect(v.hosts()).toEqual([]);
  });
});
