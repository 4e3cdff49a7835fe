// The NFLOG reader (DESIGN §6.12): Debian's tcpdump on `nflog:GROUP`, in the
// driver's own network namespace (a child inherits it), writing pcap to a
// pipe that nflog-pcap.ts parses. Supervised: when tcpdump exits for any
// reason it is restarted after a jittered, growing delay (reset once a run
// lasted a while), and every restart is counted.
//
// Why tcpdump: it is maintained, packaged everywhere, reads NFLOG inside a
// network namespace (checked on this machine), and needs no configuration
// file or daemon (ulogd2 would need both, and a socket or file to hand
// records over). Its pcap output is a stable framing (see nflog-pcap.ts).
//
// Never in the way of policy: the reader runs beside the apply loop and
// shares nothing with it; a dead, missing or slow reader only loses reports.
// If this process reads too slowly, the pipe fills, tcpdump blocks, and the
// kernel drops reports in its netlink queue — never packets' verdicts.
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { createBackoff } from "../../util/backoff.js";
import { PcapNflogReader, type NflogPacket } from "./nflog-pcap.js";

export interface FlowReaderOptions {
  group: number;
  logger: Logger;
  onPacket(p: NflogPacket): void;
  /** Called with each restart (after an exit that we did not ask for). */
  onRestart?(reason: string): void;
  /** Records tcpdump produced that did not parse. */
  onMalformed?(n: number): void;
  tcpdump?: string;
  /** Backoff of restarts; defaults 500 ms → 30 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run longer than this resets the backoff; default 10 s. */
  stableMs?: number;
}

export interface FlowReader {
  /** PID of the running tcpdump, if any (tests kill it to check supervision). */
  readonly pid: number | undefined;
  readonly restarts: number;
  /** Resolves once a tcpdump has said it is listening (or after the timeout, false). */
  listening(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

export function startFlowReader(o: FlowReaderOptions): FlowReader {
  const backoff = createBackoff({ initialMs: o.initialBackoffMs ?? 500, maxMs: o.maxBackoffMs ?? 30_000 });
  let child: ChildProcess | undefined;
  let stopped = false;
  let restarts = 0;
  let timer: NodeJS.Timeout | undefined;
  let isListening = false;
  let waiters: (() => void)[] = [];

  function run(): void {
    if (stopped) return;
    const parser = new PcapNflogReader();
    const started = Date.now();
    isListening = false;
    // -U: write each packet as it comes (no stdio buffering: records are
    // seconds-fresh); -w -: pcap to stdout. No -s: libpcap sizes its netlink
    // receive buffer from the snapshot length, and a small one truncates a
    // datagram carrying several NFLOG messages (the second report of one
    // packet came out zero-filled here). The kernel already copies only
    // FLOW_NFLOG_SIZE bytes of each packet.
    //
    // setpriv --pdeathsig: tcpdump dies with the driver, even a SIGKILLed one
    // (an orphan would keep the NFLOG group bound, and in a deleted test
    // namespace would wait for ever). The kernel clears that setting when a
    // process changes its user, so tcpdump keeps root (-Z root) instead of
    // dropping to its own user: with -w it only copies bytes, never dissects.
    const args = ["-Z", "root", "-i", `nflog:${o.group}`, "-U", "-w", "-", "--immediate-mode"];
    const c = o.tcpdump
      ? spawn(o.tcpdump, args, { stdio: ["ignore", "pipe", "pipe"] })
      : spawn("setpriv", ["--pdeathsig", "KILL", "--", "tcpdump", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    let lastErr = "";
    c.stdout!.on("data", (chunk: Buffer) => {
      const before = parser.malformed;
      parser.feed(chunk, o.onPacket);
      if (parser.malformed > before) o.onMalformed?.(parser.malformed - before);
      if (parser.failed) {
        o.logger.error({ reason: parser.failed }, "flow reader: cannot parse tcpdump's output; restarting it");
        c.kill("SIGTERM");
      }
    });
    c.stderr!.setEncoding("utf8");
    c.stderr!.on("data", (s: string) => {
      if (s.includes("listening on")) {
        isListening = true;
        for (const w of waiters) w();
        waiters = [];
      }
      lastErr = s.trim().split("\n").at(-1) ?? lastErr;
    });
    c.on("error", (err) => {
      lastErr = err.message; // ENOENT: tcpdump not installed; 'exit' follows
    });
    c.on("close", (code, signal) => {
      if (child === c) child = undefined;
      if (stopped) return;
      if (Date.now() - started > (o.stableMs ?? 10_000)) backoff.reset();
      const delay = backoff.next();
      const reason = `tcpdump exited (${signal ?? `code ${code}`})${lastErr ? `: ${lastErr}` : ""}`;
      restarts++;
      o.onRestart?.(reason);
      o.logger.warn({ reason, retryInMs: delay }, "flow reader stopped; restarting (flow reports are lost meanwhile, policy is not affected)");
      timer = setTimeout(run, delay);
    });
  }

  run();
  return {
    get pid() { return child?.pid; },
    get restarts() { return restarts; },
    listening(timeoutMs = 5_000) {
      if (isListening) return Promise.resolve(true);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        waiters.push(() => { clearTimeout(t); resolve(true); });
      });
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const c = child;
      if (!c || c.exitCode !== null) return;
      const closed = new Promise<void>((r) => c.once("close", () => r()));
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 2_000);
      await closed;
      clearTimeout(t);
    },
  };
}
