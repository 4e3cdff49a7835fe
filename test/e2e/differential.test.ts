// Differential testing in npm test (bounded): random models and packets from
// fixed seeds; the model's verdict (the evaluator behind `palisadectl trace`)
// must equal what real packets meet in real iptables, and every dropped
// packet's flow record must name what the evaluator says decided it. `npm run fuzz` runs
// the same harness at any length. On both lab topologies (test/lab/lab.ts):
// routed taps, and taps that are ports of a Linux bridge — fewer seeds there
// (CI time); the harness is the same.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDifferentialLab, describeMismatch, isConfirmed } from "../fuzz/differential.js";
import type { LabTopology } from "../lab/lab.js";
import { requireBuild, uniqueName } from "../support/binaries.js";

const SEEDS: Record<LabTopology, number[]> = {
  routed: Array.from({ length: 8 }, (_, i) => 7000 + i),
  bridged: Array.from({ length: 4 }, (_, i) => 7100 + i),
};

describe("differential: which disagreements fail", () => {
  it("a denied packet that got through fails even if a re-probe is dropped; an allowed packet dropped fails only if every re-probe is dropped", async () => {
    let reprobes = 0;
    const reprobe = (agrees: boolean) => async () => { reprobes++; return agrees; };
    expect(await isConfirmed("deny", reprobe(true))).toBe(true);
    expect(reprobes).toBe(0); // not even asked: nothing may excuse a fail-open
    expect(await isConfirmed("allow", reprobe(true))).toBe(false);
    expect(reprobes).toBe(1);
    expect(await isConfirmed("allow", reprobe(false))).toBe(true);
    expect(reprobes).toBe(3);
  });
});

for (const topology of ["routed", "bridged"] as const) describe(`differential (${topology} taps): model verdict vs. kernel`, () => {
  let env: Awaited<ReturnType<typeof createDifferentialLab>>;
  const seeds = SEEDS[topology];
  beforeAll(async () => {
    requireBuild();
    env = await createDifferentialLab({ etcdUrl: inject("etcdUrl"), name: uniqueName(topology === "routed" ? "df" : "db"), dir: mkdtempSync(join(tmpdir(), "palisade-diff-")), topology });
  });
  afterAll(async () => { await env?.close(); });

  let allowed = 0;
  let total = 0;
  let records = 0;
  for (const seed of seeds) {
    it(`seed ${seed}: every packet meets the verdict the model gives it`, async () => {
      const r = await env.runCase(seed, { packets: 24 });
      allowed += r.allowed;
      total += r.packets;
      records += r.recordsChecked;
      for (const m of r.mismatches.filter((x) => !x.confirmed)) console.warn(describeMismatch(m));
      expect(r.mismatches.filter((x) => x.confirmed).map(describeMismatch)).toEqual([]);
    });
  }

  it("exercised both verdicts, and checked the flow record of every dropped packet", () => {
    expect(records).toBeGreaterThan(total * 0.1);
    expect(total).toBe(seeds.length * 24);
    expect(allowed).toBeGreaterThan(total * 0.1);
    expect(allowed).toBeLessThan(total * 0.9);
  });
});
