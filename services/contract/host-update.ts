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

export type HostUpdate =
  | { type: "ipset-update"; name: string; family: IpVersion; members: string[] }
  | { type: "ipset-delta"; name: string; family: IpVersion; added: string[]; removed: string[] }
  | { type: "ipset-remove"; name: string; family: IpVersion }
  | { type: "chain-update"; chain: ChainDef }
  | { type: "chain-remove"; table: "filter"; family: IpVersion; name: string }
  | { type: "endpoint-update"; key: string; interfaceName: string }
  | { type: "endpoint-remove"; key: string };

/** A chain's key in the desired state and the planner: family, name, and the table when not filter. */
export function chainKey(family: IpVersion, name: string, table: Table = "filter"): string {
  return table === "filter" ? `${family}:${name}` : `${family}:${table}:${name}`;
}

/** chainKey() of a chain. */
export function keyOf(c: Pick<ChainDef, "family" | "name" | "table">): string {
  return chainKey(c.family, c.name, c.table);
}
