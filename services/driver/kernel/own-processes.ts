// Every process the driver runs, by PID: the tamper watch (DESIGN §6.9)
// must recognise the nftables transactions of our own restores and ignore
// them. A PID is remembered a while after its process ended (the monitor's
// report of a transaction can trail the process's exit), then forgotten
// before Linux could plausibly reuse it.
import type { CommandRunner } from "./command-runner.js";

const REMEMBER_MS = 10_000;

export interface OwnProcesses {
  /** The runner to use: it records the PID of everything it starts. */
  runner: CommandRunner;
  isOwnPid(pid: number): boolean;
}

export function createOwnProcesses(inner: CommandRunner, now: () => number = Date.now): OwnProcesses {
  const pids = new Map<number, number>();
  const forgetOld = () => {
    const t = now();
    for (const [p, until] of pids) if (until < t) pids.delete(p);
  };
  return {
    runner: {
      execPrefix: inner.execPrefix,
      run(cmd, args, input, ro) {
        let pid: number | undefined;
        return inner.run(cmd, args, input, {
          onSpawn: (p) => { pid = p; pids.set(p, Infinity); ro?.onSpawn?.(p); },
        }).finally(() => {
          if (pid !== undefined) pids.set(pid, now() + REMEMBER_MS);
          // Pruned here too, not only when the monitor asks: without a monitor
          // (legacy, no nft) nothing else would, and the map would only grow.
          forgetOld();
        });
      },
      // A session (the ipset session, DESIGN §6.7) is ours while it lives, and a while after.
      openSession: inner.openSession && ((cmd, args, ro) => {
        const s = inner.openSession!(cmd, args, { onSpawn: (p) => { pids.set(p, Infinity); ro?.onSpawn?.(p); } });
        s.onExit(() => { if (s.pid !== undefined) pids.set(s.pid, now() + REMEMBER_MS); forgetOld(); });
        return s;
      }),
    },
    isOwnPid(pid) {
      forgetOld();
      return pids.has(pid);
    },
  };
}
