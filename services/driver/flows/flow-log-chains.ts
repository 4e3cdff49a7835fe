// The driver's own rate-limit chains for flow reports (DESIGN §6.12): the
// report points the controller renders jump to them; their rate and mode are
// this host's driver flags, so they are rendered here and never sent.
import type { IpVersion } from "../../model/index.js";
import { DEFAULT_LOG_MARK, FLOW_LOG_CHAINS } from "../../contract/flow-report-format.js";
import type { ChainDef } from "../../contract/host-update.js";

/** Position (1-based) in pal-log of the rule counting suppressed reports. */
export const FLOW_LIMITED_RULE = 3;

/**
 * The driver's rate-limit chains for one family: `pal-log` clears the log
 * mark and sets it when the host's bucket has a token (one `-m limit` rule:
 * one bucket per family, shared by every report point); `pal-log-allow`
 * forwards to it with --flow-logs all and only clears with denied.
 */
export function renderFlowLogChains(opts: { mode: "denied" | "all"; ratePerSecond: number; burst: number; logMark?: number }, family: IpVersion): ChainDef[] {
  const m = `0x${(opts.logMark ?? DEFAULT_LOG_MARK).toString(16)}`;
  const clear = `-j MARK --set-xmark 0x0/${m}`;
  return [
    {
      table: "filter" as const, family, name: FLOW_LOG_CHAINS.deny,
      rules: [
        clear,
        `-m limit --limit ${opts.ratePerSecond}/second --limit-burst ${opts.burst} -j MARK --set-xmark ${m}/${m}`,
        // No target: its packet counter is the number of reports the rate
        // limit suppressed, which the driver reads and exports (FLOW_LIMITED_RULE).
        `-m mark ! --mark ${m}/${m}`,
      ],
    },
    { table: "filter" as const, family, name: FLOW_LOG_CHAINS.allow, rules: opts.mode === "all" ? [`-g ${FLOW_LOG_CHAINS.deny}`] : [clear] },
  ];
}
