// The port status feed the ML2 driver writes into Neutron after a port went
// ACTIVE (services/openstack/port-transitions.ts, DESIGN §11.11): damped
// DOWN/ERROR, immediate ACTIVE, bounded, and a reader that missed changes
// is told to read in full.
import { describe, expect, it } from "vitest";
import { EndpointState, type EndpointStatus, type HostStatus } from "../../services/contract/status.js";
import { EndpointStatus as EndpointStatusPb, HostStatus as HostStatusPb } from "../../services/gen/palisade/status/v1/status.js";
import { endpointKeyString } from "../../services/model/index.js";
import type { Ml2View } from "../../services/openstack/ml2-endpoint.js";
import { createPortTransitions } from "../../services/openstack/port-transitions.js";
import { endpoint } from "../support/model.js";

const PORT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const e = endpoint({ host: "hv1", workload: "vm-1", id: PORT, name: "tap0a1b2c3d-4e", ipv4_nets: ["10.0.0.5"], profile_ids: ["p"] });
const port = { id: PORT, host: "hv1" };

function view(o: { connected?: boolean; up?: boolean; present?: boolean } = {}): Ml2View {
  const h: HostStatus = HostStatusPb.fromPartial({ hostname: "hv1", connected: o.connected ?? true, inSync: true, appliedRevision: 10 });
  const s: EndpointStatus = EndpointStatusPb.fromPartial({ endpointKey: endpointKeyString(e), hostname: "hv1", state: (o.up ?? true) ? EndpointState.ENDPOINT_STATE_UP : EndpointState.ENDPOINT_STATE_ERROR, detail: "tap gone" });
  return { hosts: new Map([["hv1", h]]), statuses: new Map([[s.endpointKey, s]]), endpointsByPort: new Map(o.present === false ? [] : [[PORT, [{ endpoint: e, revision: 5 }]]]) };
}

function feed(holdMs = 1_000) {
  let t = 0;
  const f = createPortTransitions({ holdMs, capacity: 3, now: () => t });
  return { f, advance: (ms: number) => { t += ms; f.tick(); } };
}

describe("port status feed", () => {
  it("a port going DOWN is reported once it has lasted the hold time; back ACTIVE at once", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const start = f.since(undefined, 0);
    expect(start.reset).toBe(true); // a new reader learns the epoch and where to read from
    f.touch(view({ connected: false }), [port]);
    advance(999);
    expect(f.since(start.epoch, start.seq).transitions).toEqual([]);
    advance(1);
    const down = f.since(start.epoch, start.seq);
    expect(down.transitions).toMatchObject([{ id: PORT, host: "hv1", status: "DOWN", detail: expect.stringMatching(/no driver connected/) }]);
    f.touch(view(), [port]);
    expect(f.since(start.epoch, down.seq).transitions).toMatchObject([{ status: "ACTIVE" }]);
  });

  it("a flap shorter than the hold time reports nothing (a controller restart must not set every port DOWN)", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const { epoch, seq } = f.since(undefined, 0);
    f.touch(view({ connected: false }), [port]);
    advance(500);
    f.touch(view(), [port]);
    advance(5_000);
    expect(f.since(epoch, seq).transitions).toEqual([]);
  });

  it("ERROR carries the reason; a port whose endpoint is gone is forgotten, not reported", () => {
    const { f, advance } = feed(0);
    f.touch(view(), [port]);
    const { epoch, seq } = f.since(undefined, 0);
    f.touch(view({ up: false }), [port]);
    expect(f.since(epoch, seq).transitions).toMatchObject([{ status: "ERROR", detail: "tap gone" }]);
    f.touch(view({ present: false }), [port]);
    advance(10);
    expect(f.size()).toBe(0);
  });

  it("after a restart of the adapter (first sight), a port not ACTIVE in Palisade is reported after the hold", () => {
    const { f, advance } = feed();
    f.touch(view({ connected: false }), [port]);
    const { epoch, seq } = f.since(undefined, 0);
    advance(1_000);
    expect(f.since(epoch, seq).transitions).toMatchObject([{ status: "DOWN" }]);
  });

  it("bounded: a reader further behind than the capacity, or of another epoch, is told to reset", () => {
    const { f } = feed(0);
    f.touch(view(), [port]);
    const { epoch } = f.since(undefined, 0);
    for (let i = 0; i < 4; i++) f.touch(view({ up: i % 2 === 1 }), [port]);
    expect(f.since(epoch, 0).reset).toBe(true);
    expect(f.since("another-epoch", 4).reset).toBe(true);
    const page = f.since(epoch, 1);
    expect(page.reset).toBe(false);
    expect(page.transitions.map((x) => x.seq)).toEqual([2, 3, 4]);
  });
});
