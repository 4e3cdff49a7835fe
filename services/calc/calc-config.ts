// The controller's rendering settings (its flags): they reach hosts as
// rendered rules, not as a message (DESIGN §5.8).

export interface CalcConfig {
  /** Mark bit used to carry "allowed" out of profile chains (DESIGN §6.4). */
  acceptMark: number;
  /** Workload -> host traffic: "drop" (default) or "accept" (after the workload's outbound rules). */
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
