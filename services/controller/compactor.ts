// Keeps etcd's history bounded. Every model and status write adds a revision,
// and etcd (as Palisade runs it) has no auto-compaction: without this, the
// backend grows until the NOSPACE alarm stops all writes.
//
// Exactly one replica compacts: the leader of an etcd election under
// <prefix>/compactor/. Leadership is checked with election.leader() before
// each compaction, not with etcd3's ElectionObserver (which can report the
// wrong leader). Retention is by time: every replica samples (time, etcd
// revision) every interval, and the leader compacts to the newest sample at
// least `retention` old — so a watcher that fell behind by less than the
// retention can still resume, and a new leader (which sampled too) can
// compact at once. Compaction is logical (physical: false): etcd frees the
// space for reuse; returning it to the file system needs a defragmentation
// (runbook). A watcher whose start revision was compacted gets an error and
// resynchronises (model-feed.ts).
//
// Campaigning needs a lease, which etcd refuses under the NOSPACE alarm, so
// nothing here blocks the controller's start: the campaign is retried in the
// background. The leader's loop also puts the model revision key back when a
// deletion under the alarm removed it (etcd-store.ts).
import type { Campaign, Etcd3 } from "etcd3";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { createBackoff, sleep } from "../util/backoff.js";
import type { EtcdStore } from "./etcd-store.js";

export interface CompactorOptions {
  client: Etcd3;
  store: EtcdStore;
  /** Election key prefix (ends with "/"). */
  electionPrefix: string;
  logger: Logger;
  /** How long history is kept; > 0. */
  retentionMs: number;
  /** How often to sample and compact; default min(60 s, retention). */
  intervalMs?: number;
  /** TTL of the campaign's lease: how long a crashed leader blocks takeover. Default 10 s. */
  leaseTtlSeconds?: number;
  replicaId: string;
  /** Clock (injectable so tests need not wait minutes). */
  now?: () => number;
  onCompacted?: (revision: number) => void;
}

export interface Compactor {
  readonly leader: boolean;
  readonly lastCompacted: number;
  /** One sample-and-maybe-compact step (the loop calls it every interval; tests may too). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

export function startCompactor(o: CompactorOptions): Compactor {
  const now = o.now ?? Date.now;
  const interval = o.intervalMs ?? Math.min(60_000, o.retentionMs);
  // Unique per campaign: two replicas may share a replica id (same host and pid in tests).
  const me = `${o.replicaId}/${randomUUID()}`;
  const election = o.client.namespace(o.electionPrefix).election("leader", o.leaseTtlSeconds ?? 10);
  const samples: { at: number; revision: number }[] = [];
  const abort = new AbortController();
  let campaign: Campaign | undefined;
  let elected = false;
  let lastCompacted = 0;
  let loop: Promise<void> | undefined;

  function campaignLoop(): void {
    if (abort.signal.aborted) return;
    const c = election.campaign(me);
    campaign = c;
    c.on("elected", () => {
      if (c !== campaign) return; // a campaign we already gave up
      elected = true;
      o.logger.info({ replica: o.replicaId }, "elected to compact etcd's history");
    });
    c.on("error", (err: Error) => {
      elected = false;
      if (abort.signal.aborted || c !== campaign) return;
      // Lease refused (etcd down, NOSPACE) or lost: campaign again later.
      o.logger.debug({ err: err.message }, "compaction campaign failed; retrying");
      campaign = undefined;
      void sleep(backoff.next(), abort.signal).then(campaignLoop);
    });
  }
  // At most about a lease TTL: a follower that keeps failing to campaign must still be ready to take over.
  const backoff = createBackoff({ initialMs: 1_000, maxMs: 10_000 });

  async function tick(): Promise<void> {
    const t = now();
    const head = await o.client.kv.range({ key: Buffer.from(o.electionPrefix), count_only: true });
    samples.push({ at: t, revision: Number(head.header.revision) });
    // Keep only what can still matter: the newest sample old enough, and younger ones.
    let target: { at: number; revision: number } | undefined;
    while (samples.length && samples[0]!.at <= t - o.retentionMs) target = samples.shift();
    if (target) samples.unshift(target);
    if (!campaign) return;
    // etcd decides, not the campaign's events: "elected" may come late or
    // never (its internal watch can break when history it needs was
    // compacted — by us, or anyone), and a lost lease may be noticed late.
    elected = (await election.leader()) === me;
    if (!elected) return;
    backoff.reset();
    await o.store.repairRevisionKey().catch(() => undefined);
    if (!target || target.revision <= lastCompacted) return;
    try {
      await o.client.kv.compact({ revision: String(target.revision), physical: false });
    } catch (err) {
      // Another tool (or etcd's own auto-compaction) got further already.
      if (!(err as Error).message.includes("required revision has been compacted")) throw err;
    }
    lastCompacted = target.revision;
    o.onCompacted?.(target.revision);
    o.logger.debug({ revision: target.revision, retentionMs: o.retentionMs }, "etcd history compacted");
  }

  campaignLoop();
  loop = (async () => {
    while (!abort.signal.aborted) {
      await tick().catch((err: Error) => o.logger.debug({ err: err.message }, "compaction step failed; next interval"));
      await sleep(interval, abort.signal);
    }
  })();

  return {
    get leader() { return elected; },
    get lastCompacted() { return lastCompacted; },
    tick,
    async stop() {
      abort.abort();
      await loop;
      // Resigning hands leadership over at once instead of after the lease TTL.
      await campaign?.resign().catch(() => undefined);
      elected = false;
    },
  };
}

/** "5m", "90s", "1h", "500ms", "0" -> milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`invalid duration '${s}': use a number with ms, s, m or h (e.g. 5m), or 0`);
  const n = Number(m[1]);
  const unit = m[2] ?? (n === 0 ? "s" : undefined);
  if (!unit) throw new Error(`invalid duration '${s}': a unit is needed (ms, s, m or h), e.g. 5m`);
  return Math.round(n * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[unit as "ms" | "s" | "m" | "h"]);
}
