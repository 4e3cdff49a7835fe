// A long-lived interactive `ipset -` (DESIGN §6.7): set member changes
// without starting a process per apply.
//
// What interactive ipset (7.17) does, checked on the real one
// (test/dataplane/ipset-session.test.ts, and the fake is held to it in
// test/dataplane/fake-kernel-conformance.test.ts):
//   - it prints the prompt "ipset> " (no newline) before reading each line;
//   - each line is its own command, sent to the kernel at once (unlike
//     `ipset restore`, nothing is buffered across lines);
//   - a failing command prints a message (no line number) and ipset goes on
//     with the next line; at EOF it exits 0.
// So a batch is written as its lines followed by the sentinel `version`,
// whose answer ("ipset v7.17, protocol version: 7") marks the batch's end.
// The output up to the sentinel must be prompts alone (and ipset 7.x's
// protocol-6 warning, PROTOCOL_WARNING_RE): anything else is an error, attributed to the line whose prompt it follows (the k-th prompt
// of a batch is printed before its k-th line is read). Lines are add/del
// with -exist only (sessionEligible), so the only errors are real ones.
//
// Any failure (an error, the process ending, no sentinel within the
// timeout, too much output) kills the process and rejects: later lines of
// the batch may have been carried out, so the caller must treat the whole
// batch as of unknown effect (the dataplane forgets and reads back).
import type { CommandRunner, CommandSession, RunOptions } from "./command-runner.js";

const PROMPT = "ipset> ";
const SENTINEL_RE = /^ipset v\d+(?:\.\d+)*, protocol version: \d+$/;
/**
 * ipset 7.x on a kernel that speaks only protocol 6 prints this next to its
 * `version` answer ("Warning: Kernel support protocol versions 6-6 while
 * userspace supports protocol versions 6-7"), on either side of it: not an
 * error of any line, so it is skipped wherever it arrives. Nothing else is.
 */
const PROTOCOL_WARNING_RE = /^Warning: Kernel support protocol versions /;
/** How long a failed batch waits for its killed process to end before rejecting anyway. */
const KILL_WAIT_MS = 5_000;
/** More output than this without a sentinel is not ipset answering a batch. */
const MAX_OUTPUT = 1 << 20;
/** A batch of at most this many lines goes through the session; a larger one through `ipset restore`
 * (interactive ipset sends one netlink message per line, ~40 µs each; a restore batches them, ~13 µs
 * per line after ~15 ms to start: the session is faster below ~600 lines). */
export const SESSION_MAX_LINES = 400;
/** add/del of one member, with -exist: the only lines a session takes. */
const ELIGIBLE_RE = /^(?:add|del) [A-Za-z0-9_.:-]+ [^\s]+ -exist$/;

/** Whether a batch may go through a session: add/del lines alone, each with -exist, no more than SESSION_MAX_LINES. */
export function sessionEligible(lines: readonly string[]): boolean {
  return lines.length > 0 && lines.length <= SESSION_MAX_LINES && lines.every((l) => ELIGIBLE_RE.test(l));
}

export type SessionFailure = "error" | "ended" | "timeout" | "output";

export class IpsetSessionError extends Error {
  constructor(readonly reason: SessionFailure, detail: string) {
    super(`ipset session: ${detail}`);
    this.name = "IpsetSessionError";
  }
}

export interface IpsetSession {
  readonly pid: number | undefined;
  /** True once the process has ended (killed, exited, or after a failed batch). */
  readonly ended: boolean;
  /**
   * Carries out `lines` (sessionEligible); resolves when every line was
   * carried out without error. Rejects with an IpsetSessionError otherwise,
   * after the process has ended. One batch at a time.
   */
  run(lines: readonly string[]): Promise<void>;
  /** Ends the process; resolves once it has ended. */
  close(): Promise<void>;
}

export function openIpsetSession(runner: CommandRunner, opts: { timeoutMs?: number; killWaitMs?: number; runOptions?: RunOptions } = {}): IpsetSession | undefined {
  if (!runner.openSession) return undefined;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const killWaitMs = opts.killWaitMs ?? KILL_WAIT_MS;
  const proc: CommandSession = runner.openSession("ipset", ["-"], opts.runOptions);
  /** Output not yet parsed (a partial prompt or line). */
  let buf = "";
  /** Prompts seen since the last sentinel: the line an error belongs to. */
  let prompts = 0;
  /** Errors since the last sentinel: [line of the batch, message]. */
  let errors: [number, string][] = [];
  let exited: string | undefined;
  let batch: { lines: number; resolve(): void; fail(reason: SessionFailure, detail: string): void } | undefined;

  function parse(): void {
    while (buf.length) {
      if (buf.startsWith(PROMPT)) { prompts++; buf = buf.slice(PROMPT.length); continue; }
      if (PROMPT.startsWith(buf)) return; // a prompt, in part
      const nl = buf.indexOf("\n");
      if (nl < 0) return; // a line, in part
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (PROTOCOL_WARNING_RE.test(line)) continue;
      if (!SENTINEL_RE.test(line)) {
        // A message of several lines ("Try `ipset help'…") belongs to the same prompt.
        const last = errors[errors.length - 1];
        if (last && last[0] === prompts) last[1] += ` | ${line}`;
        else if (errors.length < 20) errors.push([prompts, line]);
        continue;
      }
      const [seen, errs] = [prompts, errors];
      prompts = 0;
      errors = [];
      const b = batch;
      if (!b) {
        // A sentinel nobody asked for: not the ipset we talk to. It fails the next batch.
        errors = [...errs.map(([, m]) => [0, m] as [number, string]), [0, `unexpected output: ${line}`]];
        continue;
      }
      if (errs.length) {
        b.fail("error", errs.map(([n, m]) => (n >= 1 && n <= b.lines ? `line ${n} of ${b.lines}: ${m}` : m)).join("; "));
      } else if (seen !== b.lines + 1) {
        b.fail("output", `${b.lines} lines and the sentinel written, ${seen} prompts seen`);
      } else {
        b.resolve();
      }
    }
  }

  proc.onOutput((t) => {
    buf += t;
    if (buf.length > MAX_OUTPUT) { batch?.fail("output", `more than ${MAX_OUTPUT} bytes of output without an end`); buf = ""; return; }
    parse();
  });
  proc.onExit((why) => {
    exited = why;
    batch?.fail("ended", `the process ended (${why})`);
  });

  return {
    get pid() { return proc.pid; },
    get ended() { return exited !== undefined || proc.ended; },
    run(lines) {
      if (batch) return Promise.reject(new Error("ipset session: a batch is already running"));
      if (exited !== undefined) return Promise.reject(new IpsetSessionError("ended", `the process had ended before the batch (${exited})`));
      if (!sessionEligible(lines)) return Promise.reject(new Error("ipset session: only add/del lines with -exist, at most SESSION_MAX_LINES"));
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => b.fail("timeout", `no answer within ${timeoutMs} ms`), timeoutMs);
        let settled = false;
        const b = {
          lines: lines.length,
          resolve() {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            batch = undefined;
            resolve();
          },
          fail(reason: SessionFailure, detail: string) {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            // Whatever it was doing, it does no more: nothing of this batch
            // can still be carried out after the caller reads the kernel back.
            // Bounded: a process that does not end even after SIGKILL (stuck
            // in the kernel) must not hang the apply; the error says so.
            let waited: ReturnType<typeof setTimeout> | undefined;
            const gone = new Promise<boolean>((r) => { waited = setTimeout(() => r(false), killWaitMs); });
            void Promise.race([proc.kill().then(() => true), gone]).then((ended) => {
              clearTimeout(waited);
              batch = undefined;
              // Never used again either way.
              if (!ended) exited ??= `did not end within ${killWaitMs} ms of SIGKILL`;
              reject(new IpsetSessionError(reason, ended ? detail : `${detail} (the process, pid ${proc.pid ?? "?"}, did not end within ${killWaitMs} ms of SIGKILL)`));
            });
          },
        };
        batch = b;
        // Errors printed between batches belong to no line of this one: they fail it too.
        if (errors.length) errors = errors.map(([, m]) => [0, m]);
        proc.write(`${lines.join("\n")}\nversion\n`);
      });
    },
    close: () => proc.kill(),
  };
}
