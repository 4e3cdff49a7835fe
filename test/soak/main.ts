// npm run soak [-- --hosts N] [--endpoints-per-host N] [--duration S] [--baseline S] [--writers N] [--json FILE]
// Not part of npm test (a short version with bounds is: test/integration/status-soak.test.ts).
import { writeFileSync } from "node:fs";
import { runSoak } from "./soak.js";

const args = process.argv.slice(2);
const num = (flag: string, dflt: number) => {
  const i = args.indexOf(flag);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`soak: ${flag} takes a non-negative number\n`);
    process.exit(2);
  }
  return v;
};
const jsonAt = args.indexOf("--json");
const result = await runSoak({
  hosts: num("--hosts", 1000),
  endpointsPerHost: num("--endpoints-per-host", 2),
  durationS: num("--duration", 600),
  baselineS: num("--baseline", 60),
  writers: num("--writers", 4),
  sampleEveryS: num("--sample-every", 10),
  log: (l) => process.stdout.write(`${l}\n`),
});
for (const p of result.phases) {
  process.stdout.write(`phase acks=${p.acks}  ${p.seconds}s  writes=${p.writes} (${p.writes_per_s}/s)  latency p50=${p.latency.p50_ms}ms p99=${p.latency.p99_ms}ms  ` +
    `etcd revisions/write=${p.etcd_revisions_per_write}  convergence p50=${p.convergence.p50_ms}ms p99=${p.convergence.p99_ms}ms  ` +
    `etcd db ${p.db_size_start_mib} -> ${p.db_size_end_mib} MiB  rss ${p.rss_mib.join(",")} MiB\n`);
}
process.stdout.write(`throughput acks/none=${result.throughput_ratio_acks_vs_none ?? "-"}  rss growth=${result.rss_growth_mib} MiB  etcd db growth=${result.db_growth_mib_per_min} MiB/min\n`);
if (jsonAt >= 0) writeFileSync(args[jsonAt + 1]!, `${JSON.stringify(result, null, 2)}\n`);
process.exit(0);
