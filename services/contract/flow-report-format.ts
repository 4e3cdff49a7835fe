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
 * The driver's chains that report a revoked connection (DESIGN §6.14), one
 * per side of the packet the workload is on and connection direction: the
 * chain name is all the reader has to tell which endpoint's connection it
 * was. "-r": the packet is a reply (its source is the connection's
 * destination); the record is turned back into the connection's direction.
 * Names: `pal-end-in…` read as inbound (flow-reporter.ts), the others as
 * outbound; none starts with `pal-ct`.
 */
export const ENDED_CHAINS = {
  /** Original direction, the workload is the packet's in-interface: its outbound connection. */
  outFrom: "pal-end-out",
  /** Original direction, the workload is the out-interface: its inbound connection. */
  inTo: "pal-end-in",
  /** A reply from the workload (in-interface): a connection inbound to it. */
  inFrom: "pal-end-in-r",
  /** A reply to the workload (out-interface): a connection it opened. */
  outTo: "pal-end-out-r",
  /** Shared by the four: marks the connection reported and takes a token; its first rule's packet counter is the exact count. */
  count: "pal-end",
} as const;

/** The NFLOG target of a report (group, size, prefix). */
export function nflogTarget(prefix: string): string {
  return `-j NFLOG --nflog-group ${FLOW_NFLOG_GROUP} --nflog-size ${FLOW_NFLOG_SIZE} --nflog-threshold 1 --nflog-prefix ${prefix}`;
}

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
  // An open connection a revision revoked: reported by the driver's own
  // chains (ENDED_CHAINS), once per connection; its "n" is the policy
  // epoch it was denied in, which the driver maps to that revision.
  e: { verdict: "deny", decision: "ended" },
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

const PREFIX_RE = /^pal:([ADdmisnhe]):(pal[A-Za-z0-9_.-]{1,25})(?::(\d{1,5}))?$/;

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
