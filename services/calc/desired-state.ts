// What the calculation core emits for one host (mirrors the sync protocol's
// Update messages, without depending on generated code).
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

export function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

/** Config the rendering depends on (ConfigUpdate on the wire). */
export interface CalcConfig {
  /** Mark bit used to carry "allowed" out of profile chains. */
  acceptMark: number;
  /** Workload -> host traffic: "drop" (default) or "accept" (after the endpoint's outbound rules). */
  workloadToHost: "drop" | "accept";
  /**
   * Render flow report points (NFLOG through the driver's rate-limit chains,
   * DESIGN §6.12). The controller turns it on; absent means off, which keeps
   * the plain rendering that most unit tests pin.
   */
  flowLogs?: boolean;
  /** Mark bit of "this report point got a token" (default 0x2000000). */
  logMark?: number;
}

export const DEFAULT_CALC_CONFIG: CalcConfig = { acceptMark: 0x1000000, workloadToHost: "drop" };
