// Retry delays, decided in one place: exponential with full jitter, so a
// fleet of drivers that lost the same controller does not reconnect in step.
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  random?: () => number;
}

export function createBackoff(opts: BackoffOptions) {
  const random = opts.random ?? Math.random;
  let attempt = 0;
  return {
    next(): number {
      const cap = Math.min(opts.maxMs, opts.initialMs * 2 ** attempt);
      attempt = Math.min(attempt + 1, 30);
      return Math.round(cap / 2 + (random() * cap) / 2);
    },
    reset(): void {
      attempt = 0;
    },
  };
}

/** Resolves after ms, or at once when signal aborts (or already has); leaves no listener behind. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => { clearTimeout(t); resolve(); };
    const t = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Runs `fn` until it succeeds or `signal` aborts, waiting with backoff
 * between attempts and telling `onError` about each failure. Resolves true
 * on success, false when aborted.
 */
export async function retryUntilAborted(
  fn: () => Promise<void>, opts: BackoffOptions & { signal: AbortSignal; onError: (err: Error) => void },
): Promise<boolean> {
  const backoff = createBackoff(opts);
  while (!opts.signal.aborted) {
    try {
      await fn();
      return true;
    } catch (e) {
      opts.onError(e as Error);
      await sleep(backoff.next(), opts.signal);
    }
  }
  return false;
}
