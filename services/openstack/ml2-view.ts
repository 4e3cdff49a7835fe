// Palisade kept live for the port status feed (DESIGN §11.11): host and
// endpoint status from the controller's status stream (WatchStatus: a
// snapshot, then changes), the adapter's endpoints from a listing taken at
// start, after every sync that wrote, and every minute (listings are
// serialised: one at a time, the latest started wins). Each change names the
// ports it touches, so the feed (port-transitions.ts) recomputes those
// alone; nothing is touched before the first snapshot and listing, and
// `onLive(false)` says the stream is down (the feed then holds its clocks).
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { call } from "../contract/clients.js";
import { endpointFromPb } from "../contract/model-wire.js";
import type { EndpointStatus, HostStatus, WatchStatusResponse } from "../contract/status.js";
import type { cliClients } from "../runtime/cli-clients.js";
import { createBackoff, sleep } from "../util/backoff.js";
import type { Ml2View } from "./ml2-endpoint.js";
import { isOwned } from "./reconcile.js";
import { ORCHESTRATOR } from "./translate.js";

type Clients = ReturnType<typeof cliClients>;
type Port = { id: string; host: string };
type Entry = { endpoint: ReturnType<typeof endpointFromPb>; revision: number }[];
type EndpointPb = Parameters<typeof endpointFromPb>[0];

/** The adapter's own endpoints in a listing, by Neutron port id (one per host binding), with the revision each was written at. */
export function endpointsByPortOf(endpoints: readonly EndpointPb[]): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const pb of endpoints) {
    const endpoint = endpointFromPb(pb);
    if (endpoint.orchestrator !== ORCHESTRATOR || !isOwned({ kind: "Endpoint", endpoint })) continue;
    const list = out.get(endpoint.id) ?? [];
    list.push({ endpoint, revision: Number(pb.revision) });
    out.set(endpoint.id, list);
  }
  return out;
}

/** host/orchestrator/workload/id -> the Neutron port it is, when it is the adapter's. */
function portOfKey(key: string): Port | undefined {
  const p = key.split("/");
  return p.length === 4 && p[1] === ORCHESTRATOR ? { id: p[3]!, host: p[0]! } : undefined;
}

export function createLiveView(o: { clients: Clients; logger: Logger; signal: AbortSignal; onChange: (view: Ml2View, ports: Port[]) => void; onLive?: (live: boolean) => void }) {
  const hosts = new Map<string, HostStatus>();
  const statuses = new Map<string, EndpointStatus>();
  let endpointsByPort = new Map<string, Entry>();
  /** Host -> the adapter's ports on it. */
  let portsByHost = new Map<string, Set<string>>();
  let streaming = false;
  let listed = false;

  const view = (): Ml2View => ({ hosts, statuses, endpointsByPort });
  const portsOnHost = (h: string): Port[] => [...(portsByHost.get(h) ?? [])].map((id) => ({ id, host: h }));
  const allPorts = (): Port[] => [...endpointsByPort].flatMap(([id, l]) => l.map((x) => ({ id, host: x.endpoint.host })));

  function onMessage(m: WatchStatusResponse): void {
    const touched: Port[] = [];
    if (m.snapshot) {
      hosts.clear();
      statuses.clear();
    }
    for (const h of m.hosts) { hosts.set(h.hostname, h); touched.push(...portsOnHost(h.hostname)); }
    for (const h of m.removedHosts) { hosts.delete(h); touched.push(...portsOnHost(h)); }
    for (const e of m.endpoints) {
      statuses.set(e.endpointKey, e);
      const p = portOfKey(e.endpointKey);
      if (p) touched.push(p);
    }
    for (const k of m.removedEndpoints) {
      statuses.delete(k);
      const p = portOfKey(k);
      if (p) touched.push(p);
    }
    // A snapshot (first, or after a reconnect) may change any port.
    if (listed && streaming) o.onChange(view(), m.snapshot ? allPorts() : touched);
  }

  async function stream(): Promise<void> {
    const backoff = createBackoff({ initialMs: 500, maxMs: 10_000 });
    while (!o.signal.aborted) {
      await new Promise<void>((resolve) => {
        const s = o.clients.status.watchStatus({});
        const stop = () => s.cancel();
        o.signal.addEventListener("abort", stop, { once: true });
        s.on("data", (m: WatchStatusResponse) => {
          const first = m.snapshot && !streaming;
          if (m.snapshot) { streaming = true; backoff.reset(); }
          onMessage(m);
          if (first) o.onLive?.(true);
        });
        const end = (why: string) => {
          o.signal.removeEventListener("abort", stop);
          if (streaming && !o.signal.aborted) o.logger.warn({ why }, "ML2 view: the status stream ended; reconnecting (port status changes wait)");
          if (streaming) o.onLive?.(false);
          streaming = false;
          resolve();
        };
        s.on("error", (e: grpc.ServiceError) => end(e.message));
        s.on("end", () => end("ended by the controller"));
      });
      await sleep(backoff.next(), o.signal);
    }
  }

  /** Lists the adapter's endpoints again; the ports whose endpoint came, went or was rewritten are touched. */
  let listing: Promise<void> = Promise.resolve();
  function refreshEndpoints(): Promise<void> {
    // One at a time, in the order asked: a listing started before a sync's
    // writes never lands after one started after them.
    const next = listing.catch(() => {}).then(listOnce);
    listing = next;
    return next;
  }
  async function listOnce(): Promise<void> {
    const eps = await call(o.clients.policy, o.clients.policy.listEndpoints, { host: "" }, 30_000);
    const next = endpointsByPortOf(eps.endpoints);
    const byHost = new Map<string, Set<string>>();
    for (const [id, list] of next) {
      for (const { endpoint } of list) {
        let s = byHost.get(endpoint.host);
        if (!s) byHost.set(endpoint.host, (s = new Set()));
        s.add(id);
      }
    }
    const sig = (l: Entry | undefined) => JSON.stringify((l ?? []).map((x) => [x.endpoint.host, x.revision]).sort());
    const touched: Port[] = [];
    for (const id of new Set([...endpointsByPort.keys(), ...next.keys()])) {
      const before = endpointsByPort.get(id), after = next.get(id);
      if (sig(before) === sig(after)) continue;
      for (const h of new Set([...(before ?? []), ...(after ?? [])].map((x) => x.endpoint.host))) touched.push({ id, host: h });
    }
    endpointsByPort = next;
    portsByHost = byHost;
    const first = !listed;
    listed = true;
    if (!streaming) return;
    // The first listing after the stream's snapshot: every port is new to the feed.
    o.onChange(view(), first ? allPorts() : touched);
  }

  void stream();
  return { refreshEndpoints };
}
