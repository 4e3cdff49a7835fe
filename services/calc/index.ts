// Public surface of the calculation core.
export { CalcGraph, type CalcSink } from "./calc-graph.js";
export { UpdateCoalescer } from "./update-coalescer.js";
export * from "./desired-state.js";
export * from "./names.js";
export { renderProfile, renderRules, ruleMatchSpecs, chunkPorts, acceptMarkSpecs } from "./render-rules.js";
export { DISPATCH_FANOUT } from "./prefix-tree.js";
export * from "./flow-log.js";
