// npm run soak [-- --hosts N] [--endpoints-per-host N] [--duration S] [--baseline S] [--writers N]
//   [--replicas N] [--kill-replica-at S] [--fanout-every MS] [--hosts-per-channel N] [--connect-rate HOSTS_PER_S] [--connect-timeout S] [--sample-every S] [--json FILE]
// Not part of npm test (short versions with bounds are: test/e2e/status-soak.test.ts).
import { writeFileSync } from "node:fs";
import { runSoak } from "./soak.js";
import { round } from "../bench/stats.js";

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
  replicas: Math.max(1, num("--replicas", 1)),
  killReplicaAtS: args.includes("--kill-replica-at") ? num("--kill-replica-at", 0) : undefined,
  fanoutEveryMs: num("--fanout-every", 1000),
  hostsPerChannel: Math.max(1, num("--hosts-per-channel", 25)),
  connectRate: num("--connect-rate", 0) || undefined,
  connectTimeoutS: args.includes("--connect-timeout") ? num("--connect-timeout", 0) : undefined,
  log: (l) => process.stdout.write(`${l}\n`),
});
if (args.includes("--kill-replica-at") && result.replicas < 2) process.stderr.write("soak: --kill-replica-at needs --replicas 2 or more; no replica was killed\n");
process.stdout.write(`${result.hosts} hosts, ${result.endpoints} endpoints, ${result.replicas} replica(s); all hosts had a snapshot after ${result.connect_s}s (streams lost/refused meanwhile: ${JSON.stringify(result.connect_streams_lost_or_refused)})\n`);
for (const p of result.phases) {
  process.stdout.write(`phase acks=${p.acks}  ${p.seconds}s  writes=${p.writes} (${p.writes_per_s}/s)  latency p50=${p.latency.p50_ms}ms p99=${p.latency.p99_ms}ms  ` +
    `etcd revisions/write=${p.etcd_revisions_per_write}  convergence p50=${p.convergence.p50_ms}ms p99=${p.convergence.p99_ms}ms  ` +
    `etcd db ${p.db_size_start_mib} -> ${p.db_size_end_mib} MiB\n` +
    `  fan-out (${p.fanout.writes} tag changes x ${result.hosts} hosts): from answer p50=${p.fanout.from_ack.p50_ms}ms p99=${p.fanout.from_ack.p99_ms}ms max=${p.fanout.from_ack.max_ms}ms; ` +
    `from send p50=${p.fanout.from_send.p50_ms}ms p99=${p.fanout.from_send.p99_ms}ms; last host p50=${p.fanout.all_hosts.p50_ms}ms p99=${p.fanout.all_hosts.p99_ms}ms; missed=${p.fanout.missed}\n` +
    `  after writes stop: every host received the last write after ${p.settle.hosts_ms ?? "-"}ms, status shows it after ${p.settle.status_ms ?? "-"}ms\n` +
    `  cpu cores: replicas ${p.cpu_cores.replicas.join("/")}  etcd ${p.cpu_cores.etcd}  simulator ${p.cpu_cores.simulator}; ` +
    `${p.host_batches} host batches (${round(p.host_batches / p.seconds)}/s), CPU per host batch: replicas ${p.cpu_per_host_batch.replicas_us} us, simulator ${p.cpu_per_host_batch.simulator_us} us, etcd ${p.cpu_per_host_batch.etcd_us} us\n` +
    p.rss_mib.map((r, i) => `  replica ${i} rss ${r.join(",")} MiB\n`).join(""));
}
if (result.hello_storm) process.stdout.write(`hello storm: ${JSON.stringify(result.hello_storm)}\n`);
process.stdout.write(`throughput acks/none=${result.throughput_ratio_acks_vs_none ?? "-"}  rss growth=${result.rss_growth_mib} MiB (per replica ${result.rss_growth_per_replica_mib.join("/")})  etcd db growth=${result.db_growth_mib_per_min} MiB/min\n`);
if (jsonAt >= 0) writeFileSync(args[jsonAt + 1]!, `${JSON.stringify(result, null, 2)}\n`);
process.exit(0);
