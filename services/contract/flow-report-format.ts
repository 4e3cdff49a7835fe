// Flow reports, the part controller and driver share (DESIGN §6.12): the
// NFLOG group, the report codes and their words, the prefix format, and the
// names of the driver-owned rate-limit chains report points jump to. How the
// controller renders report points is calc/render-flow-reports.ts; how the
// driver renders its rate-limit chains, driver/flows/flow-log-chains.ts.
//
// A report point is two lines in front of the decision:
//
//   <match> -j pal-log                     driver-owned: takes a token from the
//                                          host's bucket; sets LOG_MARK when it got one
//   -m mark --mark L/L -j NFLOG --nflog-prefix pal:<code>:<chain>[:<n>] …
//   <match> -j DROP                        the decision itself, unchanged
//
// Why the mark and not a limit match inline: the rate is the driver's to
// configure (per host), while profile chains are rendered once and shared by
// every host; `-m limit` in one driver-owned rule is one token bucket per
// host and family, whatever number of chains call it.

/** NFLOG group of every report (not configurable: controller and driver must agree). */
export const FLOW_NFLOG_GROUP = 4242;
/** Bytes of each packet copied to userspace: the IP and transport headers are all a report needs. */
export const FLOW_NFLOG_SIZE = 128;
/** Mark bit set by pal-log when the host's bucket had a token. */
export const DEFAULT_LOG_MARK = 0x2000000;

/** Driver-owned chains the report points jump to (DESIGN §6.12). */
export const FLOW_LOG_CHAINS = {
  /** Denials: always reported (within the rate). */
  deny: "pal-log",
  /** Allow rules: `-g pal-log` with --flow-logs all, a no-op with denied. */
  allow: "pal-log-allow",
} as const;

/**
 * What a report point stands for. `A` is the only allow; the words are the
 * trace evaluator's (DESIGN §2.8), plus anti-spoofing and workload-to-host.
 */
export const FLOW_CODES = {
  A: { verdict: "allow", decision: "rule" },
  D: { verdict: "deny", decision: "rule" },
  d: { verdict: "deny", decision: "default-deny" },
  m: { verdict: "deny", decision: "missing-profile" },
  i: { verdict: "deny", decision: "inactive" },
  s: { verdict: "deny", decision: "anti-spoofing" },
  n: { verdict: "deny", decision: "no-endpoint" },
  h: { verdict: "deny", decision: "workload-to-host" },
} as const;
export type FlowCode = keyof typeof FLOW_CODES;
export type FlowDecision = (typeof FLOW_CODES)[FlowCode]["decision"];

/**
 * `pal:<code>:<chain>[:<n>]` — at most 4 + 2 + 28 + 5 characters, far below
 * NFLOG's 64-byte prefix. `n` is the model's rule index (rules, a profile's
 * inbound_rules or outbound_rules index, not an iptables line) or, for a
 * missing profile, its position in the endpoint's profile_ids. Profile ids
 * (up to 128 characters) never appear: the chain name stands for them, and
 * whoever reads the report resolves it against the model.
 */
export function logPrefix(code: FlowCode, chain: string, n?: number): string {
  return n === undefined ? `pal:${code}:${chain}` : `pal:${code}:${chain}:${n}`;
}

const PREFIX_RE = /^pal:([ADdmisnh]):(pal[A-Za-z0-9_.-]{1,25})(?::(\d{1,5}))?$/;

export interface ParsedPrefix {
  code: FlowCode;
  chain: string;
  n?: number;
}

/** The inverse of logPrefix; undefined for anything else (another tool's NFLOG, garbage). */
export function parseLogPrefix(prefix: string): ParsedPrefix | undefined {
  const m = PREFIX_RE.exec(prefix);
  if (!m) return undefined;
  return { code: m[1] as FlowCode, chain: m[2]!, n: m[3] === undefined ? undefined : Number(m[3]) };
}
