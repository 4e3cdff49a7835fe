// Process execution, injected so tests can fake it — and separate tests use
// the real one. The real runner optionally enters a network namespace, so a
// test (or the lab) can drive a namespace from outside it.
import { spawn } from "node:child_process";
import { execa } from "execa";

export interface CommandResult {
  stdout: string;
}

export interface RunOptions {
  /**
   * Told the process id as soon as it is spawned (before it can have done
   * anything): the tamper watch recognises the driver's own nftables
   * transactions by it. Runners that cannot say simply never call it.
   */
  onSpawn?(pid: number): void;
}

export interface CommandRunner {
  run(cmd: string, args: string[], input?: string, opts?: RunOptions): Promise<CommandResult>;
  /**
   * How to start a long-lived process where this runner's commands run
   * (e.g. ["ip", "netns", "exec", NS]); absent = right here. The tamper
   * watch's `nft monitor` must watch the namespace the driver programs.
   */
  readonly execPrefix?: readonly string[];
  /**
   * Starts a long-lived process (an interactive `ipset -`) where this
   * runner's commands run, its stdout and stderr merged into one unbuffered
   * stream, so that an error is seen in order with what came before and
   * after it. Absent: the runner cannot keep a process (callers fall back
   * to run()). DESIGN §6.7.
   */
  openSession?(cmd: string, args: string[], opts?: RunOptions): CommandSession;
}

/** A long-lived process behind a runner: text in, text out, until it ends. */
export interface CommandSession {
  /** Its process id (undefined when it could not be spawned; it has then already ended). */
  readonly pid: number | undefined;
  /** Writes to its stdin (nothing happens once it has ended). */
  write(text: string): void;
  /** Called with each piece of output (stdout and stderr merged, in order) as it arrives. */
  onOutput(fn: (text: string) => void): void;
  /** Called once when it has ended (exited, been killed, or failed to start). */
  onExit(fn: (why: string) => void): void;
  readonly ended: boolean;
  /** SIGKILL; resolves once it has ended (at once if it already has). */
  kill(): Promise<void>;
}

export class CommandError extends Error {
  constructor(readonly command: string, readonly stderr: string, readonly exitCode: number | undefined) {
    super(`${command} failed (exit ${exitCode ?? "?"}): ${stderr.trim().split("\n").slice(0, 3).join(" | ")}`);
    this.name = "CommandError";
  }
}

export function createExecRunner(opts: { netns?: string; timeoutMs?: number } = {}): CommandRunner {
  return {
    execPrefix: opts.netns ? ["ip", "netns", "exec", opts.netns] : undefined,
    async run(cmd, args, input, ro) {
      // `ip netns exec` execs the command in place: the PID stays the command's.
      const [file, argv] = opts.netns ? ["ip", ["netns", "exec", opts.netns, cmd, ...args]] : [cmd, args];
      const sub = execa(file, argv, { input, reject: false, timeout: opts.timeoutMs ?? 60_000, stripFinalNewline: false, maxBuffer: 512 * 1024 * 1024 });
      if (sub.pid !== undefined) ro?.onSpawn?.(sub.pid);
      const r = await sub;
      if (r.exitCode !== 0 || r.failed) throw new CommandError(`${cmd} ${args.join(" ")}`.trim(), String(r.stderr || r.message || ""), r.exitCode);
      return { stdout: String(r.stdout) };
    },
    openSession(cmd, args, ro) {
      // `ip netns exec` and `sh -c exec` and `stdbuf` all exec in place: the
      // PID is the command's own. stdbuf -o0: ipset's stdout is a pipe here,
      // block-buffered by default (an error would not arrive before EOF).
      const script = 'exec stdbuf -o0 "$0" "$@" 2>&1';
      const argv = [...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []), "sh", "-c", script, cmd, ...args];
      return spawnSession(argv, ro);
    },
  };
}

function spawnSession(argv: string[], ro: RunOptions | undefined): CommandSession {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "ignore"] });
  const outputs: ((t: string) => void)[] = [];
  const exits: ((why: string) => void)[] = [];
  let ended: string | undefined;
  const end = (why: string) => {
    if (ended !== undefined) return;
    ended = why;
    for (const fn of exits) fn(why);
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (t: string) => { for (const fn of outputs) fn(t); });
  // A write after the process died: EPIPE here, the exit below says why.
  child.stdin!.on("error", () => undefined);
  child.on("error", (e) => end(`could not start: ${e.message}`));
  child.on("exit", (code, signal) => end(signal ? `killed by ${signal}` : `exited with code ${code}`));
  if (child.pid !== undefined) ro?.onSpawn?.(child.pid);
  // Neither the process nor its pipes keep Node running: if the driver
  // exits without closing it, the session reads EOF and ends by itself.
  child.unref();
  (child.stdin as unknown as { unref?(): void }).unref?.();
  (child.stdout as unknown as { unref?(): void }).unref?.();
  return {
    pid: child.pid,
    get ended() { return ended !== undefined; },
    write(text) { if (ended === undefined && child.stdin!.writable) child.stdin!.write(text); },
    onOutput(fn) { outputs.push(fn); },
    onExit(fn) { if (ended !== undefined) fn(ended); else exits.push(fn); },
    kill() {
      if (ended !== undefined) return Promise.resolve();
      return new Promise<void>((resolve) => {
        exits.push(() => resolve());
        // Held until it has ended: whoever waits for the kill waits for the exit.
        child.ref();
        child.kill("SIGKILL");
      });
    },
  };
}
