// Driver features at hello (DESIGN §6.5, "Mixed versions"): what a hello's
// list stands for, and what the controller refuses.
import { describe, expect, it } from "vitest";
import {
  DRIVER_FEATURES, FEATURE_CT_ADMIT, FEATURE_FLOW_LOG, FEATURE_POSITION_LAYOUT, FEATURE_SET_LAYOUT, REQUIRED_FEATURES, announcedFeatures, missingFeatures, tooOldMessage,
} from "../../services/contract/driver-features.js";

describe("driver features", () => {
  it("a driver from before features (nothing announced) lacks everything the controller renders for", () => {
    expect(missingFeatures([])).toEqual([FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG, FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT]);
  });

  it("set-layout implies flow-log: drivers that announce only set-layout (they predate the flow-log feature) are served", () => {
    expect(announcedFeatures([FEATURE_SET_LAYOUT])).toEqual(new Set([FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG]));
    expect(missingFeatures([FEATURE_SET_LAYOUT])).toEqual([FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT]);
    expect(missingFeatures([FEATURE_SET_LAYOUT, FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT])).toEqual([]);
  });

  it("position-layout is never implied: a driver of the class layout cannot tell which endpoint holds an address from the active set (DESIGN §6.5)", () => {
    expect(missingFeatures([FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG, FEATURE_CT_ADMIT])).toEqual([FEATURE_POSITION_LAYOUT]);
  });

  it("ct-admit is never implied: the controller's workload-to-host accept jumps to pal-ct-admit, which only such a driver programs (DESIGN §6.14)", () => {
    expect(announcedFeatures([FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG]).has(FEATURE_CT_ADMIT)).toBe(false);
  });

  it("flow-log alone does not imply set-layout; unknown features are ignored", () => {
    expect(missingFeatures([FEATURE_FLOW_LOG, FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT, "something-newer"])).toEqual([FEATURE_SET_LAYOUT]);
  });

  it("this build's driver has everything this build's controller requires", () => {
    expect(missingFeatures(DRIVER_FEATURES)).toEqual([]);
    expect(REQUIRED_FEATURES.every((f) => DRIVER_FEATURES.includes(f))).toBe(true);
  });

  it("the refusal tells the operator what is missing and what to do", () => {
    expect(tooOldMessage([FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG])).toMatch(/^driver too old: lacks features \[set-layout, flow-log\]; upgrade palisade-driver/);
  });
});
