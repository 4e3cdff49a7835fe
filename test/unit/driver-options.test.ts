// The driver's options are normalised in one place (services/driver/driver-options.ts).
import { describe, expect, it } from "vitest";
import { createLogger } from "../../services/runtime/logger.js";
import { DRIVER_DEFAULTS, normalizeDriverOptions } from "../../services/driver/driver-options.js";
import { FakeKernel } from "../support/fake-kernel.js";

const base = { controllers: ["127.0.0.1:1"], hostname: "hv1", runner: new FakeKernel(), logger: createLogger({ name: "test", level: "silent" }) };

describe("normalizeDriverOptions", () => {
  it("fills every default", () => {
    const o = normalizeDriverOptions(base);
    expect(o).toMatchObject({
      interfacePrefixes: ["tap"], backend: "auto", families: [4, 6], driftCheckMs: 30_000, postWriteCheckMs: 2_000, interfacePollMs: 2_000,
      readInterface: DRIVER_DEFAULTS.readInterface, rulesetMonitor: {}, credentials: undefined, metrics: undefined, flows: undefined,
    });
  });

  it("keeps what was given, families de-duplicated", () => {
    const o = normalizeDriverOptions({ ...base, families: [6, 6], interfacePrefixes: ["vnet"], backend: "legacy", driftCheckMs: 20, rulesetMonitor: false });
    expect(o).toMatchObject({ families: [6], interfacePrefixes: ["vnet"], backend: "legacy", driftCheckMs: 20, rulesetMonitor: false });
  });

  it("refuses what cannot work", () => {
    expect(() => normalizeDriverOptions({ ...base, controllers: [] })).toThrow(/controller/);
    expect(() => normalizeDriverOptions({ ...base, families: [] })).toThrow(/families/);
    expect(() => normalizeDriverOptions({ ...base, families: [5 as 4] })).toThrow(/families/);
    expect(() => normalizeDriverOptions({ ...base, interfacePrefixes: [] })).toThrow(/prefix/);
    expect(() => normalizeDriverOptions({ ...base, driftCheckMs: 0 })).toThrow(/driftCheckMs/);
    expect(() => normalizeDriverOptions({ ...base, postWriteCheckMs: Number.NaN })).toThrow(/postWriteCheckMs/);
  });
});
