// The driver's flow-report wiring, kept out of driver.ts (DESIGN §6.12): the
// rate-limit chains it must program, and the reporter started once the sync
// client exists.
import type { Logger } from "pino";
import { renderFlowLogChains } from "./flow-log-chains.js";
import type { ChainDef } from "../../contract/host-update.js";
import type { FlowReport } from "../../contract/sync.js";
import type { IpVersion } from "../../model/index.js";
import type { Backend } from "../kernel/backend.js";
import { iptablesCommands } from "../kernel/backend.js";
import type { CommandRunner } from "../kernel/command-runner.js";
import type { FlowMetrics } from "./flow-metrics.js";
import { FLOW_DEFAULTS, startFlowReporter, type FlowReportOptions, type FlowReporter } from "./flow-reporter.js";

export interface FlowReportsConfig extends Partial<FlowReportOptions> {
  metrics?: FlowMetrics;
  /** No reader at all; the chains are still programmed (as when no config is given). */
  disabled?: boolean;
}

export function startFlowReports(cfg: FlowReportsConfig | undefined, env: { families: IpVersion[]; backend: Backend; hostname: string; runner: CommandRunner; logger: Logger }) {
  const opts: FlowReportOptions = {
    mode: cfg?.mode ?? FLOW_DEFAULTS.mode,
    ratePerSecond: cfg?.ratePerSecond ?? FLOW_DEFAULTS.ratePerSecond,
    burst: cfg?.burst ?? FLOW_DEFAULTS.burst,
    logFile: cfg?.logFile, windowMs: cfg?.windowMs, maxKeys: cfg?.maxKeys, tcpdump: cfg?.tcpdump,
  };
  const chains: ChainDef[] = env.families.flatMap((f) => renderFlowLogChains(opts, f));
  return {
    chains,
    start(link: { endpoints: () => ReadonlyMap<string, string> | undefined; send: (r: FlowReport) => boolean; revisionOfEpoch?: (f: IpVersion, epoch: number) => number | undefined }): FlowReporter | undefined {
      // The reader runs in this process's network namespace: a library user
      // driving another namespace through its runner (tests) gets the chains
      // but no reader unless it asks for one.
      if (!cfg || cfg.disabled) return undefined;
      // Interface → endpoint, rebuilt when the desired state changed (at most once a second).
      let byIface = new Map<string, string>();
      let from: ReadonlyMap<string, string> | undefined;
      let size = -1;
      let at = 0;
      const endpointOfInterface = (iface: string) => {
        const eps = link.endpoints();
        if (eps !== from || (eps && eps.size !== size) || Date.now() - at > 1_000) {
          byIface = new Map();
          // Two endpoints claiming one interface: it has no one endpoint ("" = none).
          for (const [key, name] of eps ?? []) byIface.set(name, byIface.has(name) ? "" : key);
          from = eps;
          size = eps?.size ?? -1;
          at = Date.now();
        }
        return byIface.get(iface) || undefined;
      };
      return startFlowReporter(opts, {
        logger: env.logger.child({ component: "flows" }), metrics: cfg?.metrics, hostname: env.hostname,
        endpointOfInterface, send: link.send, revisionOfEpoch: link.revisionOfEpoch, runner: env.runner, families: env.families,
        iptables: { 4: iptablesCommands(env.backend, 4).save.replace(/-save$/, ""), 6: iptablesCommands(env.backend, 6).save.replace(/-save$/, "") },
      });
    },
  };
}
