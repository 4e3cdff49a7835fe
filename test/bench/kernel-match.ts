// Whether two namespaces hold the same filter rules and ipsets: the raw
// floor's and the driver's, after the same changes. A raw floor that left
// out something the kernel must receive (bridged twins, per-port set
// members, guard chains) shows here as a mismatch, not as a cheaper figure.
// BENCH_DEBUG=1 prints what differs.
import type { Backend } from "../../services/driver/kernel/backend.js";
import { iptablesCommands } from "../../services/driver/kernel/backend.js";
import type { CommandRunner } from "../../services/driver/kernel/command-runner.js";

/** Rule lines of the filter table, rule-hash comments (DESIGN §6.6) left out, sorted. */
async function rules(run: CommandRunner, backend: Backend): Promise<string[]> {
  const out = await run.run(iptablesCommands(backend, 4).save, ["-t", "filter"]);
  return out.stdout.split("\n").filter((l) => l.startsWith("-A ")).map((l) => l.replace(/ -m comment --comment "?pal:[^ "]*"?/, "")).sort();
}

/** `ipset save`, sorted; a set's hash seed and sizing (which follow its history, not its content) left out. */
async function sets(run: CommandRunner): Promise<string[]> {
  const out = await run.run("ipset", ["save"]);
  return out.stdout.split("\n").filter((l) => l.trim() !== "").map((l) => l.replace(/ (initval|hashsize|bucketsize) \S+/g, "")).sort();
}

const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function kernelMatch(raw: CommandRunner, drv: CommandRunner, backend: Backend): Promise<{ rules: number; rulesMatch: boolean; setsMatch: boolean; members: number }> {
  const [rr, rd, sr, sd] = [await rules(raw, backend), await rules(drv, backend), await sets(raw), await sets(drv)];
  if (process.env.BENCH_DEBUG) {
    for (const [n, a, b] of [["rules", rr, rd], ["sets", sr, sd]] as const) {
      const [ha, hb] = [new Set(a), new Set(b)];
      process.stderr.write(`${n}: raw only ${JSON.stringify(a.filter((x) => !hb.has(x)).slice(0, 5))} driver only ${JSON.stringify(b.filter((x) => !ha.has(x)).slice(0, 5))}\n`);
    }
  }
  return { rules: rd.length, rulesMatch: same(rr, rd), setsMatch: same(sr, sd), members: sd.filter((l) => l.startsWith("add ")).length };
}
