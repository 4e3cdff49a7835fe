// Process execution, injected so tests can fake it — and separate tests use
// the real one. The real runner optionally enters a network namespace, so a
// test (or the lab) can drive a namespace from outside it.
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
  };
}
