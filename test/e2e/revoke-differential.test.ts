// The revocation differential test in npm test (bounded; issue #21 item 4,
// DESIGN §6.14): random long-lived sessions under random models, random
// changes, and which sessions survive compared with what `trace` says of
// each session's first packet under the new model (test/fuzz/revoke.ts has
// the harness and the exact rule). A few fixed seeds here, two changes each;
// more with PALISADE_REVOKE_SEEDS=N (and PALISADE_REVOKE_SEED=S for the
// first). (`npm run fuzz` does not run it yet: the session agent is not
// copied to dist/.)
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createRevokeLab, describeProblem, type SeedResult } from "../fuzz/revoke.js";
import { requireBuild, uniqueName } from "../support/binaries.js";

const envInt = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not ${v}`);
  return n;
};
const FIRST_SEED = envInt("PALISADE_REVOKE_SEED", 7300);
const SEEDS = Array.from({ length: envInt("PALISADE_REVOKE_SEEDS", 3) }, (_, i) => FIRST_SEED + i);
const CHANGES = 2;

describe("revocation differential: surviving sessions vs. trace under the new model", () => {
  let env: Awaited<ReturnType<typeof createRevokeLab>>;
  const results: SeedResult[] = [];
  beforeAll(async () => {
    requireBuild();
    env = await createRevokeLab({ etcdUrl: inject("etcdUrl"), name: uniqueName("rd"), dir: mkdtempSync(join(tmpdir(), "palisade-rdiff-")),
      driverArgs: process.env.PALISADE_REVOKE_DRIVER_ARGS?.split(" ").filter(Boolean) });
  }, 120_000);
  afterAll(async () => { await env?.close(); });

  for (const seed of SEEDS) {
    it(`seed ${seed}: a session goes on after a change exactly when trace admits its first packet`, async () => {
      const r = await env.runSeed(seed, { changes: CHANGES });
      results.push(r);
      console.log(`seed ${seed}: ${r.opened.length} sessions, ${r.checked} checks after ${r.changes.length} changes (${r.revoked} revoked, ${r.kept} kept): ${r.changes.map((c) => c.join("; ")).join(" | ")}`);
      expect(r.problems.map(describeProblem)).toEqual([]);
    }, 120_000);
  }

  it("exercised both outcomes, every session kind, both families, same host, across hosts and bridged", () => {
    const opened = results.flatMap((r) => r.opened);
    const revoked = results.reduce((a, r) => a + r.revoked, 0);
    const kept = results.reduce((a, r) => a + r.kept, 0);
    expect(results.length).toBe(SEEDS.length);
    expect(revoked).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);
    expect(new Set(opened.map((o) => o.kind)).size).toBe(4);
    expect(new Set(opened.map((o) => o.family)).size).toBe(2);
    expect(opened.some((o) => o.bridged)).toBe(true);
    expect(opened.some((o) => o.crossHost)).toBe(true);
    expect(opened.some((o) => !o.crossHost && !o.bridged)).toBe(true);
  });
});
