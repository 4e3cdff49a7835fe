// Deleting conntrack entries of addresses that left this host's endpoints
// (no inheritance, DESIGN §6.14): `conntrack -D` by original source and by
// original destination, in the address's zone when it is known (a bridge's
// zone, DESIGN §6.13: another network may reuse the address), otherwise in
// every zone (a routed address is unique on the host).
import type { IpVersion } from "../../model/index.js";
import { CommandError, type CommandRunner } from "./command-runner.js";

export interface ConntrackTarget {
  family: IpVersion;
  /** An address or CIDR (conntrack-tools 1.4.6+ takes either). */
  net: string;
  /** The conntrack zone; undefined = every zone. */
  zone?: number;
}

/**
 * conntrack's words, with exit 1, that are no failure: nothing matched; or
 * an entry another deletion of this batch removed first (`-s A` and `-d B`
 * both match a connection from A to B, and the calls run concurrently).
 */
const NOTHING_DELETED = /\b0 flow entries have been deleted\b|such conntrack doesn't exist/;

/** The argument lists for one target: by source, then by destination. */
export function conntrackDeleteArgs(t: ConntrackTarget): string[][] {
  const common = ["-D", "-f", t.family === 4 ? "ipv4" : "ipv6", ...(t.zone === undefined ? [] : ["-w", String(t.zone)])];
  return [[...common, "-s", t.net], [...common, "-d", t.net]];
}

/**
 * Deletes every entry of the targets; resolves with the number of entries
 * deleted. Concurrent: each call is one short process, and a revocation
 * that touches one endpoint touches a handful of targets.
 */
export async function deleteConntrack(runner: CommandRunner, targets: readonly ConntrackTarget[]): Promise<number> {
  const runs = targets.flatMap(conntrackDeleteArgs).map(async (args) => {
    try {
      const out = await runner.run("conntrack", args);
      return deletedCount(out.stdout);
    } catch (err) {
      if (err instanceof CommandError && err.exitCode === 1 && NOTHING_DELETED.test(err.stderr)) return 0;
      throw err;
    }
  });
  const settled = await Promise.allSettled(runs);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.reduce((n, s) => n + (s as PromiseFulfilledResult<number>).value, 0);
}

/** conntrack -D prints each deleted entry on a line of stdout (the total goes to stderr). */
function deletedCount(stdout: string): number {
  return stdout.split("\n").filter((l) => l.trim() !== "").length;
}
