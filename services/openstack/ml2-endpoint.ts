// What Neutron's process asks palisade-openstack (DESIGN §11.11): the
// Palisade ML2 mechanism driver (services/openstack/ml2/) runs inside
// neutron-server and polls this small HTTP endpoint. Three questions:
//
//   GET  /v1/hosts/<host>      is the host's Palisade driver connected?
//                              (bind_port binds only then)
//   POST /v1/ports/status      {"ports":[{"id","host"}]} -> for each: the
//                              port's status in Neutron's words and whether
//                              its policy is in force on that host
//                              (the provisioning block is lifted only then)
//   POST /v1/changes           {"changes":[{"resource","id"[,"group"]}],"overflow"}:
//                              what Neutron committed; the watch fetches those
//                              objects by id now (pending-changes.ts). The old
//                              {"resource","id"} (one notice standing for many)
//                              makes it poll its change feed now
//   GET  /v1/ports/transitions?epoch=E&after=N
//                              port status changes since N (port-transitions.ts):
//                              DOWN / ERROR after a port was ACTIVE, and back
//
// No translation happens here and nothing is written: answers come from
// Palisade's status and endpoint listing (one cached view, refreshed at most
// every `ttlMs`, one refresh in flight), so any number of polling workers
// cost the controller one read per period. While a refresh is slow, a view
// up to `staleMs` old still answers; older, the request waits for the
// refresh, and a failed read is a 503 (the Python side then keeps its
// blocks and binds nothing — fail closed). Requests are small and bounded:
// a body over 256 KiB, more than 1,000 ports, an id or host name that
// Neutron could not have produced is a 400 with the reason.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { EndpointStatus, HostStatus } from "../contract/status.js";
import { endpointKeyString, type Endpoint } from "../model/index.js";
import { splitHostPort } from "../runtime/metrics-server.js";
import { portStatus, type NeutronPortStatus } from "./port-status.js";
import type { PortTransitions } from "./port-transitions.js";
import { CHANGE_RESOURCES, type Change, type ChangeResource } from "./pending-changes.js";

/** What the answers are computed from: a point-in-time view of Palisade. */
export interface Ml2View {
  hosts: ReadonlyMap<string, HostStatus>;
  /** Adapter-owned endpoints by Neutron port id (one per host binding), with the revision each was written at. */
  endpointsByPort: ReadonlyMap<string, readonly { endpoint: Endpoint; revision: number }[]>;
  /** Endpoint statuses by endpoint key. */
  statuses: ReadonlyMap<string, EndpointStatus>;
}

/** The Neutron revision_number of each port as of the adapter's last successful sync. */
export type SyncedRevisions = (portId: string) => number | undefined;

export interface PortAnswer {
  id: string;
  host: string;
  status: NeutronPortStatus;
  /** The port's endpoint is on the host, and the host has applied the revision that wrote it: its policy is in force. */
  programmed: boolean;
  detail: string;
}

export const ML2_LIMITS = { bodyBytes: 256 * 1024, portsPerRequest: 1_000, changesPerRequest: 1_000 } as const;

const PORT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const RESOURCES = new Set<string>(CHANGE_RESOURCES);

/**
 * A change notice (POST /v1/changes), parsed and checked whole: any problem
 * refuses it all (an Error naming the field), so a bad body changes nothing.
 * - `{"changes": [{"resource", "id", "group"?}, …], "overflow"?: bool}`: at
 *   most ML2_LIMITS.changesPerRequest changes; a rule's change must name its
 *   group (`group`, the security_group_id), no other may.
 *   Top-level `resource` and `id` beside `changes` are ignored (the driver
 *   adds its first change's, for an adapter older than this format).
 * - `{"resource", "id"}` (the driver's first format: one notice stood for
 *   many changes): `unknown`, the watch polls its change feed.
 */
export function parseChangeNotice(body: unknown): { changes: Change[]; overflow: boolean; unknown: boolean } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error(`expected {"changes": [{"resource": …, "id": …}], "overflow": false}`);
  const b = body as Record<string, unknown>;
  const resource = (v: unknown, at: string): ChangeResource => {
    if (typeof v !== "string" || !RESOURCES.has(v)) throw new Error(`${at}resource: one of ${[...RESOURCES].join(", ")}`);
    return v as ChangeResource;
  };
  const id = (v: unknown, at: string): string => {
    if (typeof v !== "string" || !PORT_ID_RE.test(v)) throw new Error(`${at}: not a Neutron id`);
    return v;
  };
  if (b.changes === undefined) {
    // The first format.
    if (b.resource === undefined) throw new Error(`expected {"changes": [{"resource": …, "id": …}], "overflow": false}`);
    resource(b.resource, "");
    id(b.id, "id");
    return { changes: [], overflow: false, unknown: true };
  }
  if (!Array.isArray(b.changes)) throw new Error("changes: not a list");
  if (b.changes.length > ML2_LIMITS.changesPerRequest) throw new Error(`changes: ${b.changes.length} changes, at most ${ML2_LIMITS.changesPerRequest} per notice (more: send "overflow": true)`);
  if (b.overflow !== undefined && typeof b.overflow !== "boolean") throw new Error("overflow: not true or false");
  const changes = b.changes.map((c: unknown, i): Change => {
    const at = `changes[${i}].`;
    if (typeof c !== "object" || c === null || Array.isArray(c)) throw new Error(`changes[${i}]: expected {"resource": …, "id": …}`);
    const x = c as Record<string, unknown>;
    const r = resource(x.resource, at);
    const out: Change = { resource: r, id: id(x.id, `${at}id`) };
    if (r === "security_group_rule") out.group = id(x.group, `${at}group (a rule's security_group_id)`);
    else if (x.group !== undefined) throw new Error(`${at}group: only a security_group_rule names its group`);
    return out;
  });
  return { changes, overflow: b.overflow === true, unknown: false };
}

/**
 * One port's answer (pure): its endpoint on `host`, if the adapter has
 * written one. With `revision` (the port's revision_number in Neutron now),
 * only once the adapter has synced that revision of the port or a later
 * one: an endpoint written for an older binding of the port (rebound to the
 * same host while the adapter is behind) is not this one's.
 */
export function portAnswer(view: Ml2View, id: string, host: string, revision?: number, synced?: SyncedRevisions): PortAnswer {
  if (revision !== undefined) {
    const have = synced?.(id);
    if (have === undefined || have < revision) {
      return { id, host, status: "DOWN", programmed: false, detail: `the adapter has not synced revision ${revision} of port ${id} yet${have === undefined ? "" : ` (has ${have})`}` };
    }
  }
  const e = view.endpointsByPort.get(id)?.find((x) => x.endpoint.host === host);
  if (!e) return { id, host, status: "DOWN", programmed: false, detail: `no Palisade endpoint for port ${id} on host ${host} yet` };
  const key = endpointKeyString(e.endpoint);
  const h = view.hosts.get(host);
  const s = portStatus(e.endpoint, h, view.statuses.get(key));
  // ACTIVE says the host is in sync and the interface up; the revision
  // check says the policy the host applied includes this endpoint.
  const applied = h ? Number(h.appliedRevision) : 0;
  const programmed = s.status === "ACTIVE" && applied >= e.revision;
  const detail = s.status === "ACTIVE" && !programmed ? `host ${host} has applied revision ${applied}, the endpoint was written at ${e.revision}` : s.detail;
  return { id, host, status: programmed ? "ACTIVE" : s.status === "ACTIVE" ? "DOWN" : s.status, programmed, detail };
}

class HttpError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > ML2_LIMITS.bodyBytes) throw new HttpError(413, `body over ${ML2_LIMITS.bodyBytes} bytes`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > ML2_LIMITS.bodyBytes) throw new HttpError(413, `body over ${ML2_LIMITS.bodyBytes} bytes`);
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "body is not JSON");
  }
}

function portsOf(body: unknown): { id: string; host: string; revision?: number }[] {
  const ports = (body as { ports?: unknown } | null)?.ports;
  if (!Array.isArray(ports)) throw new HttpError(400, `expected {"ports": [{"id": …, "host": …}]}`);
  if (ports.length > ML2_LIMITS.portsPerRequest) throw new HttpError(400, `${ports.length} ports: at most ${ML2_LIMITS.portsPerRequest} per request`);
  return ports.map((p: unknown, i) => {
    const { id, host, revision } = (p ?? {}) as { id?: unknown; host?: unknown; revision?: unknown };
    if (typeof id !== "string" || !PORT_ID_RE.test(id)) throw new HttpError(400, `ports[${i}].id: not a port id`);
    if (typeof host !== "string" || !HOST_RE.test(host)) throw new HttpError(400, `ports[${i}].host: not a host name`);
    if (revision !== undefined && !(Number.isSafeInteger(revision) && (revision as number) >= 0)) throw new HttpError(400, `ports[${i}].revision: not a revision number`);
    return revision === undefined ? { id, host } : { id, host, revision: revision as number };
  });
}

export interface Ml2EndpointOptions {
  /** HOST:PORT. */
  listen: string;
  /** Reads Palisade now (the endpoint caches it). */
  read: () => Promise<Ml2View>;
  /** Neutron committed these changes: fetch them now (`unknown`: something changed, poll the change feed). */
  nudge: (notice: { changes: Change[]; overflow: boolean; unknown: boolean }) => void;
  /**
   * Which revision of each port the adapter has synced, as of now (the
   * watch swaps its map after each sync). Taken when a read of Palisade
   * starts and kept with that view: a view read after the snapshot shows
   * everything the syncs it counts wrote, so the pair never calls an older
   * endpoint current.
   */
  synced?: () => SyncedRevisions;
  /** The port status feed (none: 404). */
  transitions?: PortTransitions;
  logger: Logger;
  /** Called once per request with its route (`/v1/hosts`, `/v1/ports/status`, …, `other`): a metric's label. */
  onRequest?: (route: string) => void;
  /** A view younger than this is reused (default 250 ms). */
  ttlMs?: number;
  /** While a refresh is in flight, a view younger than this still answers (default 2 s). */
  staleMs?: number;
}

export interface Ml2Endpoint {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMl2Endpoint(o: Ml2EndpointOptions): Promise<Ml2Endpoint> {
  const ttlMs = o.ttlMs ?? 250;
  const staleMs = Math.max(ttlMs, o.staleMs ?? 2_000);
  type Read = { view: Ml2View; synced?: SyncedRevisions };
  let cached: { at: number; read: Read } | undefined;
  let inFlight: Promise<Read> | undefined;
  const view = (): Promise<Read> => {
    const age = cached ? Date.now() - cached.at : Infinity;
    if (cached && age < ttlMs) return Promise.resolve(cached.read);
    if (!inFlight) {
      const started = Date.now();
      const synced = o.synced?.();
      const p = o.read().then((v) => { const r = { view: v, synced }; cached = { at: started, read: r }; return r; });
      inFlight = p.finally(() => { inFlight = undefined; });
      // Answered from the cache below: a failure must not go unhandled.
      inFlight.catch(() => {});
    }
    if (cached && age < staleMs) return Promise.resolve(cached.read);
    return inFlight;
  };

  const send = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    const host = /^\/v1\/hosts\/([^/]+)$/.exec(path)?.[1];
    if (host !== undefined) {
      if (req.method !== "GET") throw new HttpError(405, "GET only");
      let name = "";
      try { name = decodeURIComponent(host); } catch { /* malformed escape: refused below */ }
      if (!HOST_RE.test(name)) throw new HttpError(400, "not a host name");
      const h = (await view()).view.hosts.get(name);
      send(res, 200, { host: name, connected: h?.connected === true, in_sync: h?.inSync === true, detail: h ? h.lastError : `no Palisade driver has connected for host ${name}` });
      return;
    }
    if (path === "/v1/ports/status") {
      if (req.method !== "POST") throw new HttpError(405, "POST only");
      const ports = portsOf(await readJson(req));
      const r = await view();
      send(res, 200, { ports: ports.map((p) => portAnswer(r.view, p.id, p.host, p.revision, r.synced)) });
      return;
    }
    if (path === "/v1/changes") {
      if (req.method !== "POST") throw new HttpError(405, "POST only");
      let notice;
      try {
        notice = parseChangeNotice(await readJson(req));
      } catch (e) {
        if (e instanceof HttpError) throw e;
        throw new HttpError(400, (e as Error).message);
      }
      o.nudge(notice);
      send(res, 202, { accepted: true });
      return;
    }
    if (path === "/v1/ports/transitions") {
      if (req.method !== "GET") throw new HttpError(405, "GET only");
      if (!o.transitions) throw new HttpError(404, "no port status feed");
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      const after = Number(q.get("after") ?? "0");
      if (!Number.isSafeInteger(after) || after < 0) throw new HttpError(400, "after: not a sequence number");
      const epoch = q.get("epoch") ?? undefined;
      if (epoch !== undefined && !/^[0-9a-f-]{1,64}$/.test(epoch)) throw new HttpError(400, "epoch: not an epoch");
      send(res, 200, o.transitions.since(epoch, after));
      return;
    }
    if (path === "/healthz" && req.method === "GET") {
      send(res, 200, { ok: true });
      return;
    }
    throw new HttpError(404, "no such path");
  }

  const routes = new Set(["/v1/ports/status", "/v1/changes", "/v1/ports/transitions", "/healthz"]);
  const server: Server = createServer((req, res) => {
    if (o.onRequest) {
      const path = (req.url ?? "/").split("?")[0]!;
      o.onRequest(path.startsWith("/v1/hosts/") ? "/v1/hosts" : routes.has(path) ? path : "other");
    }
    handle(req, res).catch((e: Error) => {
      if (e instanceof HttpError) return send(res, e.code, { error: e.message });
      // Palisade unreadable: no answer rather than a stale or guessed one.
      o.logger.warn({ err: e.message }, "ML2 endpoint: cannot read Palisade's status");
      send(res, 503, { error: `cannot read Palisade's status: ${e.message}` });
    });
  });
  // Bounded per client: requests are small and quick; a slow or idle
  // client does not hold a socket for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 256;
  const [hostPart, portText] = splitHostPort(o.listen);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(portText), hostPart, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  o.logger.info({ listen: o.listen, port }, "ML2 mechanism driver endpoint on HTTP");
  return {
    port,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}
