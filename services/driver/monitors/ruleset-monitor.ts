// Tamper watch for the nft backend: `nft monitor` reports every nftables
// transaction as it is committed — iptables-nft edits included, since they
// are nftables rules in the tables `ip filter` / `ip6 filter` (and raw, for
// the conntrack-zone chain). When someone else's transaction touches our
// chains (pal-…) or the hook chains (FORWARD, INPUT; raw PREROUTING), the driver is asked for a drift check at once (debounced), instead
// of waiting for the periodic read-back: a flushed chain or a deleted hook
// jump is repaired in well under a second rather than up to 30 s.
//
// Our own writes are recognised exactly, not by timing: nft ends each
// transaction with "# new generation N by process PID (comm)", and the
// driver knows the PIDs of the restores it spawned (`isOwnPid`). So a
// foreign edit racing one of our applies is still seen, and our applies
// cause no read-back at all (no loop, no extra work on the apply path).
//
// Best effort by design: the periodic read-back stays the guarantee. The
// monitor never blocks anything (its only output is a callback that sets a
// flag); if `nft` is missing the driver warns once and relies on the
// periodic read-back; if the monitor dies it is restarted with backoff, and
// every (re)start asks for a check, since events may have been missed
// meanwhile. ipset changes are not nftables events: a flushed set is still
// found by the periodic read-back only.
import { execa } from "execa";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { createBackoff } from "../../util/backoff.js";

/** The handle of a running monitor process (injectable for tests). */
export interface MonitorProcess {
  stdout: Readable;
  /** Resolves when the process has ended: how, for the log. ENOENT or exit 127 = command not found. */
  exited: Promise<{ errorCode?: string; exitCode?: number; detail: string }>;
  kill(): void;
}

export type MonitorSpawn = (command: readonly string[]) => MonitorProcess;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface RulesetMonitorOptions {
  logger: Logger;
  /** Called (debounced) after a foreign change to our chains or hooks, and after every (re)start. */
  onChange(reason: string): void;
  /** True for processes the driver spawned itself: their transactions are ours. */
  isOwnPid?(pid: number): boolean;
  /** Default: defaultMonitorCommand() (the driver runs in the namespace it programs). */
  command?: readonly string[];
  /** Events within this window make one check; default 50 ms. */
  debounceMs?: number;
  /**
   * At least this long between two checks (default 250 ms): a process that
   * edits FORWARD in a tight loop must not keep the driver reading the
   * kernel back (each check runs before the next apply).
   */
  minIntervalMs?: number;
  /** Restart delays after the monitor ended; default 250 ms doubling to 30 s. */
  restartInitialMs?: number;
  restartMaxMs?: number;
  /** Running this long counts as healthy again (the restart backoff resets); default 30 s. */
  healthyAfterMs?: number;
  spawn?: MonitorSpawn;
  timers?: Timers;
  /** The monitor started (true) or ended (false): for a gauge. */
  onRunning?(running: boolean): void;
}

export interface RulesetMonitor {
  readonly running: boolean;
  stop(): Promise<void>;
}

/** `# new generation 12 by process 4414 (iptables-nft-re)` — the end of one transaction. */
const GENERATION_RE = /^# new generation \d+(?: by process (\d+) \(([^)]*)\))?/;
/** An event on a table, chain or rule of ip/ip6 filter or raw: verb, object, family, table, chain (absent for tables). */
const EVENT_RE = /^(?:add|insert|replace|delete|create|flush|destroy) (rule|chain|table) (ip6?) (filter|raw)(?: (\S+))?/;
/** Built-in chains holding our hooks, per table (kernel-state.ts TABLE_HOOKS). */
const HOOKED: Record<string, readonly string[]> = { filter: ["FORWARD", "INPUT"], raw: ["PREROUTING"] };

/** Whether one `nft monitor` line is about something the driver owns (our chains, the hook chains, the table itself). */
export function touchesOurs(line: string): boolean {
  const m = EVENT_RE.exec(line);
  if (!m) return false;
  if (m[1] === "table") return true;
  const chain = m[4] ?? "";
  return chain.startsWith("pal-") || HOOKED[m[3]!]!.includes(chain);
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  now: () => Date.now(),
};

export const execaSpawn: MonitorSpawn = (command) => {
  const [file, ...args] = command;
  const child = execa(file!, args, { reject: false, buffer: { stdout: false, stderr: true }, stdin: "ignore", lines: false });
  return {
    stdout: child.stdout!,
    exited: child.then((r) => ({
      errorCode: (r as { code?: string }).code,
      exitCode: r.exitCode,
      detail: r.failed ? `${r.shortMessage ?? ""} ${String(r.stderr ?? "").trim().split("\n").slice(-2).join(" | ")}`.trim() : `exit ${r.exitCode}`,
    })),
    kill: () => { child.kill("SIGTERM"); },
  };
};

/**
 * `nft monitor`, under `setpriv --pdeathsig` when available: a driver that
 * dies without cleaning up (SIGKILL, OOM) takes its monitor along, instead
 * of leaving an nft process that only a later event (SIGPIPE) would end —
 * and in a deleted namespace no event ever comes.
 */
export function defaultMonitorCommand(path = process.env.PATH ?? ""): string[] {
  const setpriv = path.split(delimiter).some((d) => d && existsSync(join(d, "setpriv")));
  return setpriv ? ["setpriv", "--pdeathsig", "TERM", "--", "nft", "monitor"] : ["nft", "monitor"];
}

export function createRulesetMonitor(o: RulesetMonitorOptions): RulesetMonitor {
  const command = o.command ?? defaultMonitorCommand();
  const spawn = o.spawn ?? execaSpawn;
  const timers = o.timers ?? defaultTimers;
  const debounceMs = o.debounceMs ?? 50;
  const backoff = createBackoff({ initialMs: o.restartInitialMs ?? 250, maxMs: o.restartMaxMs ?? 30_000 });
  const log = o.logger;
  let stopped = false;
  let proc: MonitorProcess | undefined;
  let running = false;
  let debounce: unknown;
  let lastFired = -Infinity;
  let restartTimer: unknown;
  /** Foreign writers seen in the current debounce window, for the log. */
  const writers = new Set<string>();

  function trigger(reason: string): void {
    if (debounce !== undefined || stopped) return;
    const delay = Math.max(debounceMs, lastFired + (o.minIntervalMs ?? 250) - timers.now());
    debounce = timers.setTimeout(() => {
      debounce = undefined;
      lastFired = timers.now();
      if (stopped) return;
      const who = [...writers].join(", ");
      writers.clear();
      // Who edited our chains is worth keeping: the drift warning that may
      // follow cannot say.
      if (who) log.info({ writers: who }, "another process changed Palisade's chains or hooks; checking for drift");
      o.onChange(who ? `${reason} by ${who}` : reason);
    }, delay);
  }

  function start(): void {
    if (stopped) return;
    const p = spawn(command);
    proc = p;
    const startedAt = timers.now();
    running = true;
    o.onRunning?.(true);
    // Whatever changed while no monitor was running went unseen.
    trigger("ruleset monitor started");
    let relevant = false;
    const lines = createInterface({ input: p.stdout, crlfDelay: Infinity });
    lines.on("line", (line) => {
      if (line.startsWith("#")) {
        const g = GENERATION_RE.exec(line);
        if (!g) return;
        // One transaction ends here. Without a PID we cannot tell: check.
        const pid = g[1] ? Number(g[1]) : undefined;
        if (relevant && (pid === undefined || !o.isOwnPid?.(pid))) {
          writers.add(pid === undefined ? "an unknown process" : `process ${pid} (${g[2]})`);
          trigger("ruleset changed");
        }
        relevant = false;
        return;
      }
      if (!relevant && touchesOurs(line)) relevant = true;
    });
    p.stdout.on("error", () => undefined);
    void p.exited.then((how) => {
      lines.close();
      if (proc === p) proc = undefined;
      running = false;
      o.onRunning?.(false);
      if (stopped) return;
      // Not installed: nothing a restart would fix. (127: setpriv or a shell could not find it.)
      if (how.errorCode === "ENOENT" || how.exitCode === 127) {
        log.warn({ command: command.join(" ") }, "nft not found: tamper repair relies on the periodic read-back only");
        return;
      }
      if (timers.now() - startedAt >= (o.healthyAfterMs ?? 30_000)) backoff.reset();
      const delay = backoff.next();
      log.warn({ command: command.join(" "), how: how.detail, restartInMs: delay }, "ruleset monitor ended; restarting (periodic read-back continues meanwhile)");
      restartTimer = timers.setTimeout(() => { restartTimer = undefined; start(); }, delay);
    });
  }

  start();

  return {
    get running() { return running; },
    async stop() {
      stopped = true;
      if (debounce !== undefined) timers.clearTimeout(debounce);
      if (restartTimer !== undefined) timers.clearTimeout(restartTimer);
      const p = proc;
      if (p) {
        p.kill();
        await p.exited;
      }
    },
  };
}
