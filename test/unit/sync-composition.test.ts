// The whole controller -> driver composition as a sequence test (DESIGN §7.4,
// §8.4): calculation -> per-host outbox with random drain points and
// back-pressure (and resets) -> wire batches (chunked, partial) -> the
// driver's desired state. Hosts connect at random points (a snapshot
// mid-stream) and some disconnect and reconnect. Whatever the order and
// timing, once everything is drained each connected driver's desired state
// must equal the graph's snapshot of its host.
import { describe, expect, it } from "vitest";
import { updateFromPb } from "../../services/contract/sync-wire.js";
import { CalcGraph, DEFAULT_CALC_CONFIG } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { HostStream, SyncHub, type ResponseWriter } from "../../services/controller/sync-hub.js";
import type { SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { mulberry32, pick, randInt } from "../support/prng.js";
import { ENDPOINT_VARIANTS, FINAL_EVENTS, HOSTS, PROFILE_VARIANTS, TMP_ENDPOINTS, TMP_PROFILE, applyEvent, dE, dP, E, P, type Ev } from "../support/sequence-model.js";

const logger = createLogger({ name: "t", level: "silent" });

/** A gRPC-like writer that is "full" at random; the test decides when it drains. */
function randomWriter(rnd: () => number) {
  const sent: SyncResponse[] = [];
  let onDrain: (() => void) | undefined;
  const w: ResponseWriter & { sent: SyncResponse[]; drain(): void; readonly blocked: boolean } = {
    sent,
    write(m) { sent.push(m); return rnd() > 0.4; },
    once(_e, fn) { onDrain = fn; },
    drain() { const f = onDrain; onDrain = undefined; f?.(); },
    get blocked() { return onDrain !== undefined; },
  };
  return w;
}

/** What the driver does with batches (services/driver/driver.ts onBatch), minus the kernel. */
function driverSide() {
  let pending: DesiredState | undefined;
  let desired: DesiredState | undefined;
  let read = 0;
  return {
    consume(msgs: SyncResponse[]) {
      for (; read < msgs.length; read++) {
        const b = msgs[read]!;
        const updates = b.updates.map(updateFromPb).filter((u) => u !== undefined);
        if (b.snapshotStart) pending = new DesiredState();
        if (pending) {
          pending.apply(updates);
          if (b.inSync) { desired = pending; pending = undefined; }
          continue;
        }
        desired?.apply(updates);
      }
    },
    get desired() { return desired; },
  };
}

const plain = (d: DesiredState) => ({
  chains: Object.fromEntries([...d.chains].sort(([a], [b]) => a.localeCompare(b)).map(([k, c]) => [k, c.rules])),
  sets: Object.fromEntries([...d.sets].sort(([a], [b]) => a.localeCompare(b)).map(([k, s]) => [k, [...s.members].sort()])),
  endpoints: Object.fromEntries([...d.endpoints].sort(([a], [b]) => a.localeCompare(b))),
});

function randomEvent(rnd: () => number): Ev {
  const r = rnd();
  if (r < 0.3) return pick(rnd, FINAL_EVENTS);
  if (r < 0.45) return P(pick(rnd, Object.values(PROFILE_VARIANTS).flat()));
  if (r < 0.6) return E(pick(rnd, Object.values(ENDPOINT_VARIANTS).flat()));
  if (r < 0.7) return rnd() < 0.5 ? P(TMP_PROFILE) : E(pick(rnd, TMP_ENDPOINTS));
  if (r < 0.8) return dP(pick(rnd, ["db", "app", "web", "ops", "tmp"]));
  const e = pick(rnd, [...FINAL_EVENTS.flatMap((x) => (x.t === "E" ? [x.e] : [])), ...TMP_ENDPOINTS]);
  return dE(e);
}

function runSeed(seed: number) {
  const rnd = mulberry32(seed);
  const hub = new SyncHub(logger, 60_000);
  const graph = new CalcGraph(hub, DEFAULT_CALC_CONFIG, { listen: "subscribed" });
  const conns = new Map<string, { stream: HostStream; writer: ReturnType<typeof randomWriter>; driver: ReturnType<typeof driverSide> }>();
  const connect = (host: string) => {
    const writer = randomWriter(rnd);
    // A low reset threshold: some streams fall "too far behind" and restart from a snapshot.
    const stream = new HostStream(host, writer, graph, logger, () => undefined, 20 + randInt(rnd, 200));
    graph.subscribe(host);
    hub.attach(stream);
    conns.set(host, { stream, writer, driver: driverSide() });
  };
  const disconnect = (host: string) => {
    const c = conns.get(host)!;
    hub.detach(c.stream);
    conns.delete(host);
    if (!hub.hasHost(host)) graph.unsubscribe(host);
  };
  let rev = 0;
  const steps = 40 + randInt(rnd, 80);
  for (let i = 0; i < steps; i++) {
    const roll = rnd();
    if (roll < 0.1) {
      const h = pick(rnd, HOSTS);
      if (conns.has(h)) { if (rnd() < 0.5) disconnect(h); } else connect(h);
    } else if (roll < 0.3) {
      // A drain point: some blocked writers accept more.
      for (const c of conns.values()) if (c.writer.blocked && rnd() < 0.6) c.writer.drain();
    } else {
      // One etcd revision: a few events, then the feed's flush and revision mark.
      const n = 1 + randInt(rnd, 3);
      for (let k = 0; k < n; k++) applyEvent(graph, randomEvent(rnd));
      graph.flush(++rev);
      hub.onRevision(rev);
    }
    for (const c of conns.values()) c.driver.consume(c.writer.sent);
  }
  // Everyone connected at the end, then drain until quiet.
  for (const h of HOSTS) if (!conns.has(h)) connect(h);
  for (let guard = 0; guard < 1000 && [...conns.values()].some((c) => c.writer.blocked); guard++) {
    for (const c of conns.values()) c.writer.drain();
  }
  for (const c of conns.values()) c.driver.consume(c.writer.sent);
  return { graph, conns, rev };
}

describe("controller -> driver composition", () => {
  it("every connected driver ends with exactly the graph's snapshot of its host, over 150 random seeds", () => {
    for (let seed = 1; seed <= 150; seed++) {
      const { graph, conns, rev } = runSeed(seed);
      for (const [host, c] of conns) {
        const expected = new DesiredState();
        const snap = graph.snapshot(host);
        expect(snap.revision, `seed ${seed}`).toBe(rev);
        expected.apply(snap.updates);
        const got = c.driver.desired;
        expect(got, `seed ${seed} host ${host}: no in-sync snapshot received`).toBeDefined();
        expect(plain(got!), `seed ${seed} host ${host}`).toEqual(plain(expected));
        // The last batch carries the latest revision (what `wait` relies on).
        expect(c.writer.sent.at(-1)!.revision, `seed ${seed} host ${host}`).toBe(rev);
      }
    }
  });
});
