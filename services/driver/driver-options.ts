// The driver's options, normalised in one place (like the controller's
// normalizeControllerOptions): options -> checks -> defaults, so the rest of
// the driver reads plain, complete values.
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { IpVersion } from "../model/index.js";
import type { Backend } from "./kernel/backend.js";
import type { CommandRunner } from "./kernel/command-runner.js";
import type { FlowReportsConfig } from "./flows/flow-driver.js";
import { sysfsReader, type InterfaceReader } from "./monitors/interface-monitor.js";
import { procHostReader, type HostReader } from "./monitors/bridge-check.js";
import { sysfsBridgeReader, type BridgeReader } from "./monitors/bridge-zones.js";
import type { DriverMetrics } from "./metrics.js";

export interface DriverOptions {
  controllers: string[];
  hostname: string;
  /** How to reach the controllers (mTLS with this host's certificate); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  interfacePrefixes?: string[];
  runner: CommandRunner;
  logger: Logger;
  backend?: Backend | "auto";
  families?: IpVersion[];
  /** Periodic read-back for drift; default 30 s. */
  driftCheckMs?: number;
  /** Read-back shortly after each write (catches a racing writer); default 2 s. */
  postWriteCheckMs?: number;
  interfacePollMs?: number;
  readInterface?: InterfaceReader;
  /** What the bridge check reads (DESIGN §9.3): sysfs and /proc/sys of the driver's namespace by default. */
  readHost?: HostReader;
  /** Which bridges get a conntrack zone (DESIGN §6.13): sysfs of the driver's namespace by default. */
  readBridges?: BridgeReader;
  metrics?: DriverMetrics;
  /**
   * Tamper watch (nft backend only): `nft monitor` triggers a drift check
   * when another process edits our chains or hooks. Default on, in the
   * runner's namespace (its execPrefix); false turns it off.
   */
  rulesetMonitor?: false | { command?: readonly string[]; debounceMs?: number };
  /**
   * Flow reports (DESIGN §6.12): mode, rate, log file, metrics. Absent: the
   * rate-limit chains are programmed with the defaults, but no reader runs.
   */
  flows?: FlowReportsConfig;
  /**
   * End connections the policy no longer admits (DESIGN §6.14): policy
   * epochs in the conntrack mark, established packets judged again after a
   * revoking change, and the conntrack entries of addresses that left an
   * endpoint deleted. Default on.
   */
  endRevokedConnections?: boolean;
  /**
   * Set member changes through a long-lived `ipset -` session in the
   * driver's namespace rather than one `ipset restore` per apply (DESIGN
   * §6.7): add/del batches alone; any failure fails the apply and falls
   * back to restores until an apply succeeds. Default on.
   */
  ipsetSession?: boolean;
}

export interface NormalizedDriverOptions {
  controllers: string[];
  hostname: string;
  credentials: grpc.ChannelCredentials | undefined;
  interfacePrefixes: string[];
  runner: CommandRunner;
  logger: Logger;
  backend: Backend | "auto";
  families: IpVersion[];
  driftCheckMs: number;
  postWriteCheckMs: number;
  interfacePollMs: number;
  readInterface: InterfaceReader;
  readHost: HostReader;
  readBridges: BridgeReader;
  metrics: DriverMetrics | undefined;
  rulesetMonitor: false | { command?: readonly string[]; debounceMs?: number };
  flows: FlowReportsConfig | undefined;
  endRevokedConnections: boolean;
  ipsetSession: boolean;
}

export const DRIVER_DEFAULTS = {
  interfacePrefixes: ["tap"],
  backend: "auto",
  families: [4, 6],
  driftCheckMs: 30_000,
  postWriteCheckMs: 2_000,
  interfacePollMs: 2_000,
  readInterface: sysfsReader,
  readHost: procHostReader,
  readBridges: sysfsBridgeReader,
  rulesetMonitor: {},
  endRevokedConnections: true,
  ipsetSession: true,
} as const satisfies Partial<DriverOptions>;

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`driver option ${name} must be a positive number of milliseconds, not ${v}`);
  return v;
}

export function normalizeDriverOptions(o: DriverOptions): NormalizedDriverOptions {
  if (!o.controllers.length) throw new Error("at least one controller address is required");
  const families = [...new Set(o.families ?? DRIVER_DEFAULTS.families)];
  if (!families.length || families.some((f) => f !== 4 && f !== 6)) throw new Error(`driver option families must list 4 and/or 6, not ${JSON.stringify(o.families)}`);
  const interfacePrefixes = [...(o.interfacePrefixes ?? DRIVER_DEFAULTS.interfacePrefixes)];
  if (!interfacePrefixes.length) throw new Error("at least one interface prefix is required");
  return {
    controllers: o.controllers,
    hostname: o.hostname,
    credentials: o.credentials,
    interfacePrefixes,
    runner: o.runner,
    logger: o.logger,
    backend: o.backend ?? DRIVER_DEFAULTS.backend,
    families,
    driftCheckMs: positive("driftCheckMs", o.driftCheckMs ?? DRIVER_DEFAULTS.driftCheckMs),
    postWriteCheckMs: positive("postWriteCheckMs", o.postWriteCheckMs ?? DRIVER_DEFAULTS.postWriteCheckMs),
    interfacePollMs: positive("interfacePollMs", o.interfacePollMs ?? DRIVER_DEFAULTS.interfacePollMs),
    readInterface: o.readInterface ?? DRIVER_DEFAULTS.readInterface,
    readHost: o.readHost ?? DRIVER_DEFAULTS.readHost,
    readBridges: o.readBridges ?? DRIVER_DEFAULTS.readBridges,
    metrics: o.metrics,
    rulesetMonitor: o.rulesetMonitor ?? DRIVER_DEFAULTS.rulesetMonitor,
    flows: o.flows,
    endRevokedConnections: o.endRevokedConnections ?? DRIVER_DEFAULTS.endRevokedConnections,
    ipsetSession: o.ipsetSession ?? DRIVER_DEFAULTS.ipsetSession,
  };
}
