// What the controller sends a host, as plain data: the calculation core
// emits it, the wire carries it (sync-wire.ts), the driver applies it. It
// mirrors the sync protocol's Update messages without depending on
// generated code (DESIGN §5.2).
import type { IpVersion } from "../model/index.js";

export interface ChainDef {
  table: "filter";
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

export function chainKey(family: IpVersion, name: string): string {
  return `${family}:${name}`;
}
