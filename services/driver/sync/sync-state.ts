// The driver's side of the stream, minus the transport (sync-client.ts):
// snapshot assembly, the desired state, the revision to apply, and which
// acknowledgements to send (DESIGN §5.1, §5.3). No kernel, no timers: it
// is told about batches, and about each apply's start and outcome.
//
//   snapshot   a snapshot accumulates in `pending` until in_sync, then
//              replaces the desired state (a new DesiredState: its first
//              apply plans in full);
//   deltas     fold into the desired state at once (it records what
//              changed); a revision is applied only once all its parts
//              are here (`partial`);
//   tickets    what an apply answers for (revision, whether it carries
//              content, whether a report is owed) is fixed when its input
//              is planned (takeTicket), never before: a snapshot arriving
//              while the pre-sync apply runs is answered by the apply that
//              carries it out (commit 276d6f3).
import type { Logger } from "pino";
import { updateFromPb } from "../../contract/sync-wire.js";
import type { SyncResponse } from "../../contract/sync.js";
import { DesiredState } from "./desired-state.js";

/** What one apply answers for, fixed when its input is planned. */
export interface ApplyTicket {
  revision: number;
  /** It carries updates that arrived since the previous ticket. */
  content: boolean;
  /** A new snapshot is in it: answered even when it changes nothing. */
  report: boolean;
  /** The desired state it carries out; undefined for the pre-sync apply (placeholders), which answers nothing. */
  planned: DesiredState | undefined;
}

export interface SyncState {
  /** The controller's complete state, once one arrived; undefined before. */
  readonly desired: DesiredState | undefined;
  readonly inSync: boolean;
  readonly appliedRevision: number;
  onBatch(batch: SyncResponse): void;
  /** The stream ended: a half-received snapshot is dropped (the next stream sends a new one). */
  onDisconnected(): void;
  takeTicket(): ApplyTicket;
  /** The ticket's apply succeeded; true when the controller should hear of it (quiet no-op applies are not reported). */
  succeeded(t: ApplyTicket, wrote: boolean): boolean;
  /**
   * An apply failed (ticket undefined when it failed before its plan was
   * made, e.g. on a read-back); what it owed is owed by the retry. Returns
   * the revision to report the failure for, if any.
   */
  failed(t: ApplyTicket | undefined): number | undefined;
}

export interface SyncStateHooks {
  logger: Logger;
  /** There is something new to apply. */
  onWork(): void;
  /** The endpoints may have changed (all: a new snapshot, report every one). */
  onEndpoints(all: boolean): void;
  /** A batch could not be trusted: start over from a fresh snapshot. */
  onRefused(): void;
}

export function createSyncState(h: SyncStateHooks): SyncState {
  let desired: DesiredState | undefined;
  let pending: DesiredState | undefined;
  let pendingRevision = 0;
  let targetRevision = 0;
  let appliedRevision = 0;
  let synced = false;
  let lastApplyFailed = false;
  let reportPending = false;
  // A controller that infers progress (the snapshot says so) needs answers
  // only for revisions that brought updates: `contentPending` marks one.
  let acksForContentOnly = false;
  let contentPending = false;

  return {
    get desired() { return desired; },
    get inSync() { return synced; },
    get appliedRevision() { return appliedRevision; },

    onBatch(batch) {
      try {
        const updates = batch.updates.map(updateFromPb).filter((u) => u !== undefined);
        if (batch.snapshotStart) pending = new DesiredState();
        if (pending) {
          pending.apply(updates);
          pendingRevision = batch.revision;
          if (batch.inSync) {
            desired = pending;
            pending = undefined;
            targetRevision = pendingRevision;
            reportPending = true;
            acksForContentOnly = batch.acksForContentOnly;
            h.logger.info({ revision: targetRevision, chains: desired.chains.size, sets: desired.sets.size, endpoints: desired.endpoints.size }, "in sync with controller");
            h.onWork();
            h.onEndpoints(true);
          }
          return;
        }
        if (!desired) return; // deltas before any snapshot: ignore
        if (updates.length === 0 && batch.revision <= targetRevision && !batch.partial) return; // heartbeat
        desired.apply(updates);
        if (updates.length > 0) contentPending = true;
        // Apply a revision only once all of its parts are here.
        if (batch.partial) return;
        targetRevision = Math.max(targetRevision, batch.revision);
        h.onWork();
        if (updates.some((u) => u.type === "endpoint-update" || u.type === "endpoint-remove")) h.onEndpoints(false);
      } catch (err) {
        // A batch we cannot trust: drop the stream and start over from a snapshot.
        h.logger.error({ err: (err as Error).message }, "refusing batch from controller; reconnecting for a fresh snapshot");
        pending = undefined;
        h.onRefused();
      }
    },

    onDisconnected() {
      pending = undefined;
    },

    takeTicket() {
      const t: ApplyTicket = { revision: targetRevision, content: contentPending, report: reportPending, planned: desired };
      // Content and snapshots that arrive from now on belong to the next apply.
      contentPending = false;
      reportPending = false;
      return t;
    },

    succeeded(t, wrote) {
      if (!t.planned) return false;
      // A new snapshot (e.g. from another replica after a failover) is always
      // acknowledged, even when it changes nothing in the kernel.
      const moved = acksForContentOnly ? t.content : t.revision !== appliedRevision;
      const news = t.report || moved || wrote || lastApplyFailed || !synced;
      appliedRevision = t.revision;
      synced = true;
      lastApplyFailed = false;
      return news;
    },

    failed(t) {
      lastApplyFailed = true;
      if (!t) return desired ? targetRevision : undefined;
      contentPending ||= t.content;
      reportPending ||= t.report;
      return t.planned ? t.revision : undefined;
    },
  };
}
