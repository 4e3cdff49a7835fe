// What the controller sends a host, as plain data: the calculation core
// emits it, the wire carries it (sync-wire.ts), the driver applies it. It
// mirrors the sync protocol's Update messages without depending on
// generated code (DESIGN §5.2).
import type { IpVersion } from "../model/index.js";

/**
 * The iptables tables Palisade writes. The controller's chains are all in
 * filter (the wire refuses any other table); raw holds only the driver's own
 * conntrack-zone chain (DESIGN §6.13).
 */
export type Table = "filter" | "raw";

export interface ChainDef {
  table: Table;
  family: IpVersion;
  name: string;
  /** Rule specs without "-A <chain>". */
  rules: readonly string[];
}

/** One (net, MAC) an endpoint may send with; no `mac`: any MAC (DESIGN §2.11). */
export interface MacEntry {
  /** A host address ("10.0.0.5") or a CIDR, as in the endpoint's set members. */
  net: string;
  /** Upper case. */
  mac?: string;
}

/**
 * An endpoint's IPv6 MAC check: one MAC for every source, or per-source
 * entries (any entry admits: Neutron's OR). The controller renders it for
 * routed taps; the driver renders it for bridged ports (DESIGN §6.3).
 */
export type MacCheck = { mac: string } | { entries: readonly MacEntry[] };

export type HostUpdate =
  | { type: "ipset-update"; name: string; family: IpVersion; members: string[] }
  | { type: "ipset-delta"; name: string; family: IpVersion; added: string[]; removed: string[] }
  | { type: "ipset-remove"; name: string; family: IpVersion }
  | { type: "chain-update"; chain: ChainDef }
  | { type: "chain-remove"; table: "filter"; family: IpVersion; name: string }
  | { type: "endpoint-update"; key: string; interfaceName: string; mac6?: MacCheck }
  | { type: "endpoint-remove"; key: string };

/** A chain's key in the desired state and the planner: family, name, and the table when not filter. */
export function chainKey(family: IpVersion, name: string, table: Table = "filter"): string {
  return table === "filter" ? `${family}:${name}` : `${family}:${table}:${name}`;
}

/** chainKey() of a chain. */
export function keyOf(c: Pick<ChainDef, "family" | "name" | "table">): string {
  return chainKey(c.family, c.name, c.table);
}
