// Flow report points in the controller's rendering (DESIGN §6.12): the lines
// that report a decision before it is taken. The shared part (codes,
// prefixes, the driver's chains) is contract/flow-report-format.ts.
//
// LOG_MARK is meaningful only right after a `pal-log` call: the chain clears
// it on entry, deny points are followed by DROP, and every class chain
// clears it (with the accept mark) before its profiles, so a mark left by an
// allow point upstream can never make a later point report.
import type { CalcConfig } from "./calc-config.js";
import { DEFAULT_LOG_MARK, FLOW_LOG_CHAINS, FLOW_NFLOG_GROUP, FLOW_NFLOG_SIZE, logPrefix, type FlowCode } from "../contract/flow-report-format.js";

function logMarkHex(cfg: CalcConfig): string {
  return `0x${(cfg.logMark ?? DEFAULT_LOG_MARK).toString(16)}`;
}

/**
 * --nflog-threshold 1: hand each report to userspace at once. Without it the
 * kernel queues up to its instance default (100) and flushes after 1 s —
 * measured here as a steady 1 s delay per report. The rate limit already
 * bounds how many netlink messages that makes.
 */
function nflog(prefix: string): string {
  return `-j NFLOG --nflog-group ${FLOW_NFLOG_GROUP} --nflog-size ${FLOW_NFLOG_SIZE} --nflog-threshold 1 --nflog-prefix ${prefix}`;
}

/**
 * Report lines for a denial; `specs` are the decision's match specs ("" for
 * an unconditional DROP). Empty when flow reports are off in this config.
 */
export function denyReportLines(cfg: CalcConfig, specs: readonly string[], code: Exclude<FlowCode, "A">, chain: string, n?: number): string[] {
  if (!cfg.flowLogs || specs.length === 0) return [];
  const m = logMarkHex(cfg);
  return [
    ...specs.map((s) => (s ? `${s} -j ${FLOW_LOG_CHAINS.deny}` : `-j ${FLOW_LOG_CHAINS.deny}`)),
    `-m mark --mark ${m}/${m} ${nflog(logPrefix(code, chain, n))}`,
  ];
}

/**
 * Report lines for one match spec of an allow rule, placed before the spec's
 * accept-mark line. Both lines require the accept mark to be unset: of a
 * rule split over several lines (long port lists) only the first line that
 * matches reports.
 */
export function allowReportLines(cfg: CalcConfig, spec: string, chain: string, n: number): string[] {
  if (!cfg.flowLogs) return [];
  const a = `0x${cfg.acceptMark.toString(16)}`;
  const l = logMarkHex(cfg);
  const both = `0x${(cfg.acceptMark | (cfg.logMark ?? DEFAULT_LOG_MARK)).toString(16)}`;
  return [
    `${spec ? `${spec} ` : ""}-m mark ! --mark ${a}/${a} -j ${FLOW_LOG_CHAINS.allow}`,
    `-m mark --mark ${l}/${both} ${nflog(logPrefix("A", chain, n))}`,
  ];
}

/** A DROP that reports itself first (when flow reports are on). */
export function reportedDrop(cfg: CalcConfig, spec: string, code: "d" | "m" | "i" | "s" | "n" | "h", chain: string, n?: number): string[] {
  return [...denyReportLines(cfg, [spec], code, chain, n), spec ? `${spec} -j DROP` : "-j DROP"];
}

/** The mask the class chains clear before their profiles: accept mark, and the log mark when reports are on. */
export function clearMask(cfg: CalcConfig): number {
  return cfg.flowLogs ? cfg.acceptMark | (cfg.logMark ?? DEFAULT_LOG_MARK) : cfg.acceptMark;
}

