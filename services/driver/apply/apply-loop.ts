// The driver's apply loop (DESIGN §6.7, §6.9): serial, so a read-back
// never races a write; whatever arrives during an apply is applied next, as
// one; a failed apply is retried with backoff (traffic stays as last
// programmed); drift checks are requested periodically, after every write
// (a racing writer) and from outside (the tamper watch), and run inside the
// loop, just before the apply that repairs what they found.
import { createBackoff } from "../../util/backoff.js";
import type { ApplyResult, ApplySource, Dataplane } from "./dataplane.js";

export interface ApplyLoopOptions<T> {
  dataplane: Pick<Dataplane, "applyFrom" | "detectDrift">;
  /** Called once per apply, when its plan is made: its input, and what it answers for. */
  take(): { source: ApplySource; ticket: T };
  onApplied(r: ApplyResult, ticket: T): void;
  /** `ticket` is undefined when the apply failed before its plan was made. */
  onFailed(err: Error, ticket: T | undefined): void;
  onDriftRepaired(): void;
  /** Whether drift checks may run now (the driver: always; before the first in-sync they check the start-up state). */
  canCheckDrift(): boolean;
  driftCheckMs: number;
  postWriteCheckMs: number;
}

export interface ApplyLoop {
  /** There is something to apply: run now, or right after the apply in progress. */
  schedule(): void;
  /** Asks for a read-back and repair soon (serialised with applies); a no-op before the first complete state. */
  checkDrift(): void;
  /** No further applies; waits (bounded) for one in progress: each table's restore is atomic. */
  stop(): Promise<void>;
}

export function createApplyLoop<T>(o: ApplyLoopOptions<T>): ApplyLoop {
  const retry = createBackoff({ initialMs: 200, maxMs: 10_000 });
  let applying = false;
  let dirty = false;
  let driftRequested = false;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let postWriteTimer: NodeJS.Timeout | undefined;

  async function run(): Promise<void> {
    if (applying || stopped) return;
    applying = true;
    try {
      while (dirty && !stopped) {
        dirty = false;
        let ticket: T | undefined;
        try {
          // The check compares the kernel with what we last programmed; a
          // desired change pending right now is not drift, and the apply
          // below carries it out together with any repair (one read-back).
          if (driftRequested && o.canCheckDrift()) {
            driftRequested = false;
            if (await o.dataplane.detectDrift()) o.onDriftRepaired();
          }
          const r = await o.dataplane.applyFrom(() => {
            const t = o.take();
            ticket = t.ticket;
            return t.source;
          });
          retry.reset();
          if (r.bytesWritten > 0) schedulePostWriteCheck();
          o.onApplied(r, ticket!);
        } catch (err) {
          o.onFailed(err as Error, ticket);
          dirty = true;
          clearTimeout(retryTimer);
          retryTimer = setTimeout(() => void run(), retry.next());
          return;
        }
      }
    } finally {
      applying = false;
    }
  }

  function schedule(): void {
    dirty = true;
    void run();
  }

  function checkDrift(): void {
    if (stopped || !o.canCheckDrift()) return;
    driftRequested = true;
    schedule();
  }

  function schedulePostWriteCheck(): void {
    clearTimeout(postWriteTimer);
    postWriteTimer = setTimeout(checkDrift, o.postWriteCheckMs);
  }

  const driftTimer = setInterval(checkDrift, o.driftCheckMs);

  return {
    schedule,
    checkDrift,
    async stop() {
      stopped = true;
      clearInterval(driftTimer);
      clearTimeout(retryTimer);
      clearTimeout(postWriteTimer);
      const deadline = Date.now() + 3_000;
      while (applying && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
  };
}
