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
  const f = createPortTransitions({ holdMs, now: () => t });
  return { f, advance: (ms: number) => { t += ms; f.tick(); } };
}

/** A reader that starts now: its first page says reset, then it reads from 0. */
function reader(f: ReturnType<typeof createPortTransitions>) {
  let epoch: string | undefined;
  let seq = 0;
  return () => {
    const p = f.since(epoch, seq);
    if (p.reset) {
      epoch = p.epoch;
      const full = f.since(epoch, 0);
      seq = full.seq;
      return full.transitions.map((x) => x.status);
    }
    seq = p.seq;
    return p.transitions.map((x) => x.status);
  };
}

describe("port status feed", () => {
  it("a port going DOWN is reported once it has lasted the hold time; back ACTIVE at once", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const read = reader(f);
    expect(read()).toEqual(["ACTIVE"]); // a new reader gets the full state
    f.touch(view({ connected: false }), [port]);
    advance(999);
    expect(read()).toEqual([]);
    advance(1);
    const p = f.since(f.epoch, 1);
    expect(p.transitions).toMatchObject([{ id: PORT, host: "hv1", status: "DOWN", detail: expect.stringMatching(/no driver connected/) }]);
    expect(read()).toEqual(["DOWN"]);
    f.touch(view(), [port]);
    expect(read()).toEqual(["ACTIVE"]);
  });

  it("a flap shorter than the hold time reports nothing (a controller restart must not set every port DOWN)", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const read = reader(f);
    read();
    f.touch(view({ connected: false }), [port]);
    advance(500);
    f.touch(view(), [port]);
    advance(5_000);
    expect(read()).toEqual([]);
  });

  it("held from the first non-ACTIVE sighting: DOWN and ERROR alternating still get reported (the latest)", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const read = reader(f);
    read();
    for (let i = 0; i < 4; i++) { f.touch(view(i % 2 ? { up: false } : { connected: false }), [port]); advance(300); }
    expect(read()).toEqual(["ERROR"]);
  });

  it("ERROR carries the reason; a port whose endpoint is gone is forgotten, not reported", () => {
    const { f } = feed(0);
    f.touch(view(), [port]);
    const read = reader(f);
    read();
    f.touch(view({ up: false }), [port]);
    expect(f.since(f.epoch, 1).transitions).toMatchObject([{ status: "ERROR", detail: "tap gone" }]);
    f.touch(view({ present: false }), [port]);
    expect(f.size()).toBe(0);
    expect(read()).toEqual([]);
  });

  it("first sight: ACTIVE reported at once, not ACTIVE after the hold (so a restarted adapter re-reports the whole state)", () => {
    const up = feed();
    up.f.touch(view(), [port]);
    expect(reader(up.f)()).toEqual(["ACTIVE"]);
    const { f, advance } = feed();
    f.touch(view({ connected: false }), [port]);
    const read = reader(f);
    expect(read()).toEqual([]);
    advance(1_000);
    expect(read()).toEqual(["DOWN"]);
  });

  it("no DOWN from a frozen view: holds stop while the status stream is down, and count again from the thaw", () => {
    const { f, advance } = feed();
    f.touch(view(), [port]);
    const read = reader(f);
    read();
    f.touch(view({ connected: false }), [port]);
    f.freeze();
    advance(5_000);
    expect(read()).toEqual([]);
    f.thaw();
    advance(999);
    expect(read()).toEqual([]);
    advance(1);
    expect(read()).toEqual(["DOWN"]);
  });

  it("level, not edges: a reader far behind reads each port's current status once; the log stays bounded by the ports, whatever the churn", () => {
    const { f } = feed(0);
    f.touch(view(), [port]);
    const read = reader(f);
    read();
    for (let i = 0; i < 1_000; i++) f.touch(view({ up: i % 2 === 1 }), [port]);
    expect(read()).toEqual(["ACTIVE"]);
    expect(f.logLength()).toBeLessThanOrEqual(2 * f.size() + 65);
    expect(f.since("another-epoch", 4).reset).toBe(true);
  });
});
