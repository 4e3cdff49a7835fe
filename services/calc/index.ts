// Public surface of the calculation core.
export { CalcGraph, type CalcSink } from "./calc-graph.js";
export { UpdateCoalescer } from "./update-coalescer.js";
export * from "./desired-state.js";
export * from "./names.js";
export { renderProfile, renderRules, ruleMatchSpecs, chunkPorts, acceptMarkSpecs } from "./render-rules.js";
export { renderEndpointChains } from "./render-endpoint.js";
export { renderDispatch, DISPATCH_FANOUT } from "./dispatch.js";
export * from "./flow-log.js";
