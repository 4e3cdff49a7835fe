// Ended connections, counted (issue #21 item 7, DESIGN §6.14): the packet
// counter of the rule in `pal-end` that marks a revoked connection
// reported. One packet per connection passes it (it sets the reported bit
// the rule's callers test), so the counter is the exact number of
// connections reported ended, whatever the flow-report rate limit lost.
//
// Read by the driver itself, not the flow reporter: the count must hold on
// a host that runs no NFLOG reader (flow reports disabled, or a reader
// that crashed), and the chain is the driver's whenever epochs are on.
import { ENDED_CHAINS } from "../../contract/flow-report-format.js";
import type { IpVersion } from "../../model/index.js";
import { ENDED_COUNT_RULE } from "../plan/revocation.js";
import type { CommandRunner } from "./command-runner.js";

/** The packet counter of rule `rule` (1-based) in `iptables -L CHAIN -n -v -x` output; undefined when absent. */
export function ruleCounter(listing: string, rule: number): number | undefined {
  const row = listing.split("\n").filter((l) => /^\s*\d+\s+\d+/.test(l))[rule - 1];
  return row === undefined ? undefined : Number(row.trim().split(/\s+/)[0]);
}

export interface EndedCounter {
  /** Reads every family's counter; calls onEnded with what ended since the last read. */
  read(): Promise<void>;
}

export function createEndedCounter(o: {
  runner: CommandRunner;
  /** The iptables command per family (the backend's). */
  iptables: Record<IpVersion, string>;
  families: readonly IpVersion[];
  onEnded(family: IpVersion, n: number): void;
}): EndedCounter {
  /**
   * The counter as last read. The first read is the baseline (a previous
   * driver's count is not this one's); a chain that does not exist yet
   * counts from 0; a counter that went down means the chain was rewritten
   * (drift repair): counted from 0 again.
   */
  const last: Partial<Record<IpVersion, number>> = {};
  let reading: Promise<void> | undefined;
  async function readOnce(): Promise<void> {
    for (const f of o.families) {
      let n: number | undefined;
      try {
        n = ruleCounter((await o.runner.run(o.iptables[f], ["-w", "5", "-t", "filter", "-L", ENDED_CHAINS.count, "-n", "-v", "-x"])).stdout, ENDED_COUNT_RULE);
      } catch (err) {
        // No such chain (yet): nothing counted (iptables-legacy says "No
        // chain/target/match", iptables-nft calls a missing chain
        // "incompatible"). Anything else (the lock): try again at the next
        // read, the baseline unchanged.
        if (/No chain|does not exist|incompatible/i.test(String((err as { stderr?: string }).stderr ?? (err as Error).message))) n = 0;
        else continue;
      }
      if (n === undefined || !Number.isFinite(n)) continue;
      const prev = last[f];
      last[f] = n;
      if (prev === undefined) continue;
      const d = n >= prev ? n - prev : n;
      if (d > 0) o.onEnded(f, d);
    }
  }
  return {
    read() {
      // One read at a time: two overlapping would count a delta twice.
      reading ??= readOnce().finally(() => (reading = undefined));
      return reading;
    },
  };
}
