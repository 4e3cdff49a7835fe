// Driver flow-report metrics (DESIGN §6.12; names are part of the operator
// contract, deploy/CONFIGURATION.md). Label values are bounded: decisions
// and drop reasons are fixed word lists; no address or endpoint is a label.
import { Counter, type Registry } from "prom-client";

export function createFlowMetrics(registry: Registry) {
  return {
    flows: new Counter({
      name: "palisade_driver_flow_records_total", help: "Flow records reported (one per flow, decision point and window), by verdict and decision",
      labelNames: ["verdict", "decision"], registers: [registry],
    }),
    denied: new Counter({
      name: "palisade_driver_flows_denied_total", help: "Denied new-flow packets reported, by decision",
      labelNames: ["decision"], registers: [registry],
    }),
    dropped: new Counter({
      name: "palisade_driver_flow_records_dropped_total",
      help: "Flow reports lost, by reason: rate-limit (kernel bucket empty), aggregator (window full), disconnected (no controller), unparsed, file (log file back-pressure)",
      labelNames: ["reason"], registers: [registry],
    }),
    readerRestarts: new Counter({ name: "palisade_driver_flow_reader_restarts_total", help: "Restarts of the NFLOG reader (tcpdump)", registers: [registry] }),
  };
}

export type FlowMetrics = ReturnType<typeof createFlowMetrics>;
