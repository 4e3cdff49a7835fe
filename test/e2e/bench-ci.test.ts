// `npm run bench` must complete (issue #19: with no --only it hung for good
// in the fanout section, 1,000 streams refused by hello admission and never
// retried). CI runs the built bench at its CI size — every section, tiny —
// as a child process and checks that its --json output is complete. A hang
// fails here too: each section has a deadline (test/bench/deadline.ts) and
// the bench then exits 1 naming it. The figures mean nothing at this size;
// only their presence is checked (DESIGN §8.6).
import { execa } from "execa";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../../services/runtime/package-root.js";

const BENCH = join(packageRoot(), "dist/test/bench/main.js");

type Figures = Record<string, unknown>;
const finite = (o: Figures, ...keys: string[]) => {
  for (const k of keys) expect(Number.isFinite(o[k]), `${k} = ${String(o[k])}`).toBe(true);
};

it("npm run bench, CI size: every section completes (fanout retries refused hellos as drivers do) with figures in its JSON", async () => {
  if (!existsSync(BENCH)) throw new Error("dist/test/bench is missing: run `npm run build` (npm test does it)");
  const dir = mkdtempSync(join(tmpdir(), "palisade-bench-ci-"));
  try {
    const out = join(dir, "bench.json");
    const t0 = Date.now();
    const r = await execa(process.execPath, ["--max-semi-space-size=64", "--expose-gc", BENCH, "--size", "ci", "--json", out], {
      reject: false, timeout: 420_000, all: true, env: { NO_COLOR: "1" },
    });
    const output = String(r.all ?? "");
    console.log(`bench --size ci: ${((Date.now() - t0) / 1000).toFixed(1)} s, exit ${r.exitCode}\n${output.split("\n").filter((l) => l.startsWith("bench") || l.startsWith("fanout")).join("\n")}`);
    expect(r.exitCode, output.slice(-4000)).toBe(0);
    const j = JSON.parse(readFileSync(out, "utf8")) as Record<string, Figures>;
    expect(j.failed).toBeUndefined();
    expect(j.size).toBe("ci");
    expect(Object.keys(j.section_seconds!).sort()).toEqual(["calc", "density", "driver", "e2e", "fanout", "flows", "openstack", "revoke"]);

    finite(j.calc!, "initial_ms", "snapshots_all_hosts_ms", "update_p50_ms", "update_p99_ms");
    // Every stream connected, though admission refused most hellos at first:
    // the retries are the drivers' backoff at work.
    expect(j.fanout).toMatchObject({ streams: 200, samples: 5 });
    finite(j.fanout!, "connect_s", "p50_ms", "p99_ms");
    expect(j.fanout!.retries).toBeGreaterThan(0);
    // Routed under the keys it always had, bridged beside it (issue #20 item 5).
    for (const [key, topology] of [["driver", "routed"], ["driver_legacy", "routed"], ["driver_bridged", "bridged"], ["driver_legacy_bridged", "bridged"]] as const) {
      const d = j[key]!;
      expect(d?.topology, key).toBe(topology);
      expect(d.rules).toBeGreaterThan(0);
      finite(d, "apply_ms", "raw_restore_ms", "incremental_apply_ms", "raw_incremental_ms");
      // The raw floor and the driver ended with the same rules and sets.
      expect(d.kernel_match, `${key}: ${JSON.stringify(d)}`).toBe(true);
    }
    // Bridged adds the guard chains: more rules for the same host.
    expect(j.driver_bridged!.rules).toBeGreaterThan(j.driver!.rules as number);
    const density = j.density as unknown as { rows: Figures[]; memory: Figures[] };
    expect(new Set(density.rows.map((r) => r.topology))).toEqual(new Set(["routed", "bridged"]));
    for (const row of density.rows) {
      finite(row, "rules", "first_apply_ms", "raw_first_apply_ms", "added_p50_ms", "address_p50_ms", "rule_p50_ms");
      expect(row.kernel_rules_match, JSON.stringify(row)).toBe(true);
      expect(row.kernel_sets_match, JSON.stringify(row)).toBe(true);
    }
    expect(density.memory.length).toBeGreaterThan(0);
    // Ending revoked connections (issue #21 item 6): a row per topology, every
    // kind of change timed on and off the feature and on the raw floor; the
    // revoking changes advanced the epoch at every sample and the others
    // never; the deleted endpoint's conntrack entries went; the established
    // packets' rule lookups were walked on both rulesets.
    const revoke = j.revoke as unknown as { rows: Figures[] };
    expect(revoke.rows.map((r) => r.topology).sort()).toEqual(["bridged", "routed"]);
    for (const row of revoke.rows) {
      const at = JSON.stringify(row);
      expect(row.conntrack_entries, at).toBeGreaterThanOrEqual(2000);
      for (const k of ["rule_removed", "endpoint_deleted", "added", "tag_member", "added_deny_tag"]) {
        finite(row, `${k}_p50_ms`, `${k}_off_p50_ms`, `${k}_raw_p50_ms`, `${k}_ratio`, `${k}_on_off_ratio`);
      }
      for (const k of ["rule_removed", "endpoint_deleted", "added_deny_tag"]) expect(row[`${k}_epoch_bumps`], `${k}: ${at}`).toBe(row.samples);
      expect(row.tag_member_epoch_bumps, at).toBe(0);
      // Bridged, the new port's own set reaches the RevocationWatch as a set
      // touched in full, which it takes as a possible revocation: not yet
      // held to 0 there (issue #21, open).
      if (row.topology === "routed") expect(row.added_epoch_bumps, at).toBe(0);
      finite(row, "endpoint_deleted_conntrack_p50_ms");
      expect(row.endpoint_deleted_conntrack_deleted, at).toBeGreaterThan(0);
      finite(row, "endpoint_deleted_conntrack_failures", "endpoint_deleted_conntrack_left");
      for (const p of ["from_workload", "to_workload", "between_workloads"]) finite(row, `est_${p}_lookups_on`, `est_${p}_lookups_off`, `est_${p}_extra`);
      finite(row, "est_extra_max");
    }
    for (const e of [j.e2e!, j.e2e_tls!]) {
      expect(e.samples).toBe(5);
      finite(e, "p50_ms", "p99_ms");
    }
    finite(j.flows!, "flood_per_s", "apply_idle_p50_ms", "apply_flood_p50_ms", "driver_cpu_pct");
    expect(j.flows!.apply_samples).toMatch(/^[1-9]\d*\/[1-9]\d*$/);
    // A real Neutron (npm test installs it): the section ran, not skipped.
    expect(j.openstack!.skipped).toBeUndefined();
    for (const k of ["rule_change_revisions", "port_change_revisions", "rule_change_changed_since", "port_change_changed_since"]) {
      expect(j.openstack![k]).toMatch(/^written p50 [\d.]+ \/ p99 [\d.]+ ms, enforced p50 [\d.]+ \/ p99 [\d.]+ ms \(1\)$/);
    }
    // Issue #22 item 2: the same changes under Neutron's default
    // configuration with the ML2 driver loaded, made visible by its notices
    // (timed from the call's return: may be negative), and its idle cost at
    // both sizes.
    for (const k of ["rule_change_ml2_notices", "port_change_ml2_notices"]) {
      expect(j.openstack![k]).toMatch(/^written p50 -?[\d.]+ \/ p99 -?[\d.]+ ms, enforced p50 -?[\d.]+ \/ p99 -?[\d.]+ ms \(1\) from the API call's return \(the call: p50 [\d.]+ \/ p99 [\d.]+ ms\); target p99 500 ms: (met|not met)$/);
    }
    expect(j.openstack!.ml2_notices_during_samples).toMatch(/^load average [\d. ]+; [1-9]\d* notices, polls: [1-9]\d* changes/);
    for (const k of ["rule_change_ml2_breakdown", "port_change_ml2_breakdown"]) expect(j.openstack![k]).toMatch(/^p50 \/ p99 ms from the call's return \(\d+ samples lined up\): /);
    for (const size of [3, 6]) {
      expect(j.openstack![`idle_ml2_notices_${size}_ports`]).toMatch(/^per minute: [\d.]+ polls, [\d.]+ requests and [\d.]+ KB to Neutron, [1-9][\d.]* requests from neutron-server to the adapter; CPU [\d.]+ ms\/min adapter, [\d.]+ ms\/min neutron-server/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 450_000);
