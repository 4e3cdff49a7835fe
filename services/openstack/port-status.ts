// Palisade's view of an endpoint, in Neutron's port status vocabulary.
//
//   ACTIVE  the interface is up on its host and the host's driver has applied
//           the current policy (in sync)
//   ERROR   the driver reports the interface in error (e.g. a name outside
//           the workload prefixes: it would not be policed), or the host's
//           last apply failed
//   DOWN    anything else: admin state down (endpoint inactive), interface
//           down or not there yet, no driver connected for the host, or the
//           driver still applying its first state
//
// Neutron's own port `status` is written by code inside neutron-server, not
// through the REST API: the Palisade ML2 driver lifts a port's provisioning
// block (Neutron then sets it ACTIVE) when this mapping says ACTIVE and the
// host has applied the endpoint's revision (ml2-endpoint.ts, DESIGN §11.11);
// DOWN/ERROR after that are written back through the port status feed
// (port-transitions.ts).
import { EndpointState, type EndpointStatus, type HostStatus } from "../contract/status.js";
import { endpointKeyString, type Endpoint } from "../model/index.js";

export type NeutronPortStatus = "ACTIVE" | "DOWN" | "ERROR";

export interface PortStatusRow {
  port_id: string;
  device_id: string;
  host: string;
  interface: string;
  status: NeutronPortStatus;
  detail: string;
}

/** sync.ts's HELD_LABEL (not imported: sync.ts pulls in gRPC). */
const HELD_LABEL = "palisade.io/deletion-held";

export function portStatus(e: Endpoint, host: HostStatus | undefined, ep: EndpointStatus | undefined): { status: NeutronPortStatus; detail: string } {
  const held = e.labels[HELD_LABEL] === "true" ? "; gone from Neutron, deletion held back by the mass-deletion guard (--allow-mass-delete)" : "";
  const s = portStatusOf(e, host, ep);
  return held ? { status: s.status, detail: `${s.detail}${held}`.replace(/^; /, "") } : s;
}

function portStatusOf(e: Endpoint, host: HostStatus | undefined, ep: EndpointStatus | undefined): { status: NeutronPortStatus; detail: string } {
  if (e.state === "inactive") return { status: "DOWN", detail: "admin_state_up is false" };
  if (ep?.state === EndpointState.ENDPOINT_STATE_ERROR) return { status: "ERROR", detail: ep.detail || "interface error" };
  if (!host || !host.connected) return { status: "DOWN", detail: `no driver connected for host ${e.host}` };
  // The controller keeps in_sync once a host has applied its first state and
  // records each failed apply in last_error (cleared by the next success).
  if (host.lastError) return { status: "ERROR", detail: `host ${e.host}: ${host.lastError}` };
  if (!host.inSync) return { status: "DOWN", detail: `host ${e.host} is applying its first policy` };
  if (ep?.state === EndpointState.ENDPOINT_STATE_UP) return { status: "ACTIVE", detail: "" };
  return { status: "DOWN", detail: ep?.detail || "interface not up" };
}

export function portStatusRows(endpoints: Endpoint[], hosts: HostStatus[], statuses: EndpointStatus[]): PortStatusRow[] {
  const hostBy = new Map(hosts.map((h) => [h.hostname, h]));
  const epBy = new Map(statuses.map((s) => [s.endpointKey, s]));
  return endpoints
    .map((e) => {
      const s = portStatus(e, hostBy.get(e.host), epBy.get(endpointKeyString(e)));
      return { port_id: e.id, device_id: e.workload, host: e.host, interface: e.name, status: s.status, detail: s.detail };
    })
    .sort((a, b) => (a.port_id < b.port_id ? -1 : a.port_id > b.port_id ? 1 : 0));
}
