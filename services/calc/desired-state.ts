// What the calculation core emits for one host is the contract's
// HostUpdate (contract/host-update.ts); this file adds what only the core needs.
import { type ChainDef, type HostUpdate, chainKey } from "../contract/host-update.js";

export { type ChainDef, type HostUpdate, chainKey };

export function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

/** Config the rendering depends on (controller flags; it reaches hosts as rendered rules, not as a message). */
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
