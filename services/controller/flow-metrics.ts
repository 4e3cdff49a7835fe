// Controller flow-report metrics (DESIGN §6.12). Labels are bounded: host
// (one per hypervisor), fixed decision and reason words; never an address
// or an endpoint key.
import { Counter, Gauge, type Registry } from "prom-client";

export function createFlowMetrics(registry: Registry, stored: () => number, watchers: () => number) {
  return {
    denied: new Counter({
      name: "palisade_controller_flows_denied_total", help: "Denied new-flow packets reported by drivers, by host and decision",
      labelNames: ["host", "decision"], registers: [registry],
    }),
    dropped: new Counter({
      name: "palisade_controller_flow_records_dropped_total", help: "Flow records this replica refused, by reason (capacity, invalid)",
      labelNames: ["reason"], registers: [registry],
    }),
    driverDropped: new Counter({
      name: "palisade_controller_flow_driver_dropped_total", help: "Flow reports drivers lost, as they reported them, by host and reason (rate-limit, aggregator, disconnected, unparsed, file)",
      labelNames: ["host", "reason"], registers: [registry],
    }),
    watchDropped: new Counter({ name: "palisade_controller_flow_watch_dropped_total", help: "Flow records not delivered to slow Watch clients", registers: [registry] }),
    stored: new Gauge({ name: "palisade_controller_flow_records", help: "Flow records held in memory", registers: [registry], collect() { this.set(stored()); } }),
    watchers: new Gauge({ name: "palisade_controller_flow_watchers", help: "Open FlowService.Watch sessions", registers: [registry], collect() { this.set(watchers()); } }),
  };
}

export type ControllerFlowMetrics = ReturnType<typeof createFlowMetrics>;
