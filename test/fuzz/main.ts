// npm run fuzz -- [--seed S] [--cases N] [--packets P] [--topology routed|bridged]:
// the differential test at any length, on either lab topology (test/lab/lab.ts). Exit 1 on any mismatch (each printed with its seed and a
// minimal reproduction).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEtcd } from "../lab/etcd-process.js";
import { createDifferentialLab, describeMismatch } from "./differential.js";

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`${name} must be a non-negative integer\n`);
    process.exit(2);
  }
  return v;
};
const seed = arg("--seed", Math.floor(Math.random() * 1e6));
const cases = arg("--cases", 20);
const packets = arg("--packets", 24);
const ti = args.indexOf("--topology");
const topology = ti >= 0 ? args[ti + 1] : "routed";
if (topology !== "routed" && topology !== "bridged") {
  process.stderr.write("--topology must be routed or bridged\n");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "palisade-fuzz-"));
const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
const env = await createDifferentialLab({ etcdUrl: etcd.url, name: `pf${process.pid.toString(36)}`, dir, topology });
let total = 0;
let bad = 0;
let transient = 0;
let allowed = 0;
const t0 = performance.now();
try {
  for (let i = 0; i < cases; i++) {
    const r = await env.runCase(seed + i, { packets });
    total += r.packets;
    const confirmed = r.mismatches.filter((m) => m.confirmed).length;
    bad += confirmed;
    transient += r.mismatches.length - confirmed;
    allowed += r.allowed;
    process.stdout.write(`case ${i + 1}/${cases} seed=${seed + i}: ${r.packets} packets (${r.allowed} allowed by the model), ${confirmed} mismatches\n`);
    for (const m of r.mismatches) process.stdout.write(`${describeMismatch(m)}\n`);
  }
} finally {
  await env.close();
  await etcd.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`\n${cases} models from seed ${seed}, ${total} packets (${allowed} allowed, ${total - allowed} denied), ${bad} mismatches, ${transient} transient (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
process.exit(bad ? 1 : 0);
