// Public surface of the calculation core: what the controller, the tests and
// the benchmarks use. Everything else in services/calc is internal.
export { CalcGraph, type CalcGraphOptions, type CalcSink } from "./calc-graph.js";
export { DEFAULT_CALC_CONFIG, type CalcConfig } from "./calc-config.js";
export { chainKey, sameRules, type ChainDef, type HostUpdate } from "./desired-state.js";
export { UpdateCoalescer } from "./update-coalescer.js";
export {
  BASE_CHAINS, CHAIN_MAX, ENTRY_CHAINS, IPSET_MAX, OWNED_CHAIN_RE, OWNED_SET_RE,
  WORKLOAD_CHAINS, activeSet, missingSet, positionChain, positionNodeSet, positionSet, profileInboundChain, profileKey, profileOutboundChain, tagSet,
} from "./names.js";
export { renderProfile, renderRules, ruleMatchSpecs, chunkPorts, acceptMarkSpecs, type RenderedProfile } from "./render-rules.js";
export { DISPATCH_FANOUT } from "./prefix-tree.js";
export { allowReportLines, clearMask, denyReportLines, reportedDrop } from "./render-flow-reports.js";
