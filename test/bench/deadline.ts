// Deadlines for bench sections (DESIGN §8.6): a section that stops making
// progress becomes a failure with a message saying what it was waiting for,
// never a silent wait. A section receives an AbortSignal; its waits go
// through `orAbort`, so when the deadline passes they reject, the section's
// `finally` blocks run (controller, etcd, namespaces are cleaned up) and the
// bench exits non-zero naming the section.

/** A section ran past its deadline. */
export class DeadlineExceeded extends Error {}

/**
 * `p`, or a rejection when `signal` aborts first. `what` describes the wait
 * at that moment (a function, so it can report progress: "312 of 1,000
 * streams in sync").
 */
export function orAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string | (() => string)): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`aborted while ${typeof what === "string" ? what : what()}`));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener("abort", onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener("abort", onAbort); reject(e); },
    );
  });
}

/**
 * Runs one section with a deadline of `limitMs`. When it passes, the
 * section's signal aborts and the section gets `graceMs` to unwind (its
 * cleanup); then this rejects with DeadlineExceeded, carrying the section's
 * own error (what it was waiting for) when it gave one. A section that
 * computes synchronously cannot be interrupted: it is failed when it
 * returns late.
 */
export async function withDeadline<T>(name: string, limitMs: number, fn: (signal: AbortSignal) => Promise<T> | T, graceMs = 30_000): Promise<T> {
  const ac = new AbortController();
  const t0 = performance.now();
  const late = () => `section '${name}' did not finish within its deadline of ${Math.round(limitMs / 1000)} s`;
  const run = Promise.resolve().then(() => fn(ac.signal));
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((resolve) => { timer = setTimeout(() => resolve("expired"), limitMs); });
  try {
    const first = await Promise.race([run.then(() => "done" as const, () => "done" as const), expired]);
    if (first === "done") {
      const value = await run; // rethrows the section's own failure
      if (performance.now() - t0 > limitMs) throw new DeadlineExceeded(`${late()} (took ${Math.round((performance.now() - t0) / 1000)} s)`);
      return value;
    }
    ac.abort();
    let grace: NodeJS.Timeout | undefined;
    const unwound = await Promise.race([
      run.then(() => "finished after the deadline", (e: unknown) => (e instanceof Error ? e.message : String(e))),
      new Promise<string>((resolve) => { grace = setTimeout(() => resolve(`still running ${Math.round(graceMs / 1000)} s after it was aborted; its cleanup may not have run`), graceMs); }),
    ]);
    clearTimeout(grace);
    throw new DeadlineExceeded(`${late()}: ${unwound}`);
  } finally {
    clearTimeout(timer);
  }
}
