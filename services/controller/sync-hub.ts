// Fan-out from the calculation graph to connected drivers.
//
// Each host stream owns an outbox (UpdateCoalescer): the graph pushes into
// it synchronously; a pump drains it whenever the gRPC stream can take more.
// A slow driver therefore sees fewer, newer updates and memory stays bounded
// by the number of keys. If the outbox still grows past a threshold (e.g.
// huge set churn), the stream is reset to a fresh snapshot instead.
import type { IpVersion } from "../model/index.js";
import type { Logger } from "pino";
import { UpdateCoalescer, type CalcGraph, type CalcSink, type HostUpdate } from "../calc/index.js";
import { packBatches } from "../contract/sync-wire.js";
import type { SyncResponse } from "../gen/palisade/sync/v1/sync.js";

const BOTH_FAMILIES: ReadonlySet<IpVersion> = new Set([4, 6]);

/** Pending weight (members + rules) beyond which a stream is re-snapshotted. */
export const RESET_WEIGHT = 500_000;

/** What the hub needs of a gRPC duplex stream. */
export interface ResponseWriter {
  write(msg: SyncResponse): boolean;
  once(event: "drain", fn: () => void): unknown;
}

export class HostStream {
  private readonly outbox = new UpdateCoalescer();
  private outboxRevision = 0;
  private sentRevision = 0;
  private waitingDrain = false;
  private needSnapshot = true;
  private closed = false;
  /** Revision of the last batch that brought the driver updates (a snapshot counts). */
  private lastContentRevision = 0;
  /** The driver's last successful acknowledgement (-1: none yet), and whether its last apply failed. */
  private ackedRevision = -1;
  private ackFailing = false;
  /**
   * Told when the host can be taken to have applied `revision` without its
   * word (DESIGN §5.3): it acknowledged everything that changed its state,
   * and what it was sent since only moved the model revision on.
   */
  onProgress: (revision: number) => void = () => undefined;
  resets = 0;

  constructor(
    readonly host: string,
    private readonly writer: ResponseWriter,
    private readonly graph: CalcGraph,
    private readonly logger: Logger,
    private readonly onReset: () => void = () => undefined,
    private readonly resetWeight: number = RESET_WEIGHT,
    /** IP families the driver programs (its hello's `ipv6`): nothing of another family is sent. */
    private readonly families: ReadonlySet<IpVersion> = BOTH_FAMILIES,
  ) {}

  /** Drops updates of families the driver does not program (a `--no-ipv6` host gets no IPv6 chains or sets). */
  private forFamilies(updates: HostUpdate[]): HostUpdate[] {
    if (this.families.size === 2) return updates;
    return updates.filter((u) => {
      const family = u.type === "chain-update" ? u.chain.family : "family" in u ? u.family : undefined;
      return family === undefined || this.families.has(family);
    });
  }

  /** Coalesced keys waiting for the driver. */
  get queueDepth(): number {
    return this.outbox.size;
  }

  enqueue(revision: number, updates: HostUpdate[]): void {
    if (this.closed || this.needSnapshot) return;
    this.outbox.pushAll(updates);
    this.outboxRevision = Math.max(this.outboxRevision, revision);
    if (this.outbox.pendingWeight > this.resetWeight) {
      this.logger.warn({ host: this.host, weight: this.outbox.pendingWeight }, "driver too far behind; resetting to a snapshot");
      this.outbox.clear();
      this.needSnapshot = true;
      this.resets++;
      this.onReset();
      // Not now: we are inside the graph's flush, and a snapshot is a read
      // between batches. The feed's markRevision() right after the flush
      // (or the next drain) takes it.
      return;
    }
    this.pump();
  }

  /** Keep-alive for an idle stream: an empty batch at the last sent revision. */
  heartbeat(): void {
    if (this.closed || this.waitingDrain || this.needSnapshot || this.outbox.size > 0) return;
    this.writer.write({ revision: this.sentRevision, snapshotStart: false, inSync: false, updates: [], partial: false, acksForContentOnly: false });
  }

  /** The model advanced (maybe without touching this host): tell the driver. */
  markRevision(revision: number): void {
    if (revision > this.outboxRevision) this.outboxRevision = revision;
    this.pump();
  }

  close(): void {
    this.closed = true;
    this.outbox.clear();
  }

  /**
   * The driver's acknowledgement: returns the revision the host has applied
   * (more than it said when nothing with content was sent after it), or
   * undefined for a failed apply.
   */
  acknowledged(revision: number, ok: boolean): number | undefined {
    if (!ok) {
      this.ackFailing = true;
      return undefined;
    }
    this.ackFailing = false;
    this.ackedRevision = Math.max(this.ackedRevision, revision);
    return this.ackedRevision >= this.lastContentRevision ? Math.max(this.ackedRevision, this.sentRevision) : this.ackedRevision;
  }

  pump(): void {
    while (!this.closed && !this.waitingDrain) {
      let msgs: SyncResponse[];
      if (this.needSnapshot) {
        // The snapshot is a pure read of the graph as of its last flush;
        // updates the graph emitted before it were dropped by enqueue() (the
        // snapshot holds them), updates after it are queued: nothing is
        // lost or sent twice.
        const snap = this.graph.snapshot(this.host);
        this.needSnapshot = false;
        this.outbox.clear();
        this.outboxRevision = snap.revision;
        msgs = packBatches(snap.revision, this.forFamilies(snap.updates), { snapshotStart: true, inSync: true, acksForContentOnly: true });
        this.lastContentRevision = snap.revision;
      } else if (this.outbox.size > 0 || this.outboxRevision > this.sentRevision) {
        msgs = packBatches(this.outboxRevision, this.forFamilies(this.outbox.drain()));
        if (msgs.some((m) => m.updates.length > 0)) this.lastContentRevision = this.outboxRevision;
      } else return;
      this.sentRevision = this.outboxRevision;
      // Nothing for this host changed since it acknowledged its last content:
      // it has applied this revision too, no answer needed.
      if (!this.ackFailing && this.ackedRevision >= 0 && this.ackedRevision >= this.lastContentRevision) this.onProgress(this.sentRevision);
      let ok = true;
      for (const m of msgs) ok = this.writer.write(m) && ok;
      if (!ok) {
        // gRPC buffers what we wrote; further updates wait in the outbox.
        this.waitingDrain = true;
        this.writer.once("drain", () => {
          this.waitingDrain = false;
          this.pump();
        });
      }
    }
  }
}

/**
 * The graph's sink: routes each host's updates to its stream(s). Which hosts
 * get output is the graph's business (subscribe/unsubscribe, called by the
 * sync service): the hub never answers questions for the graph.
 */
export class SyncHub implements CalcSink {
  private readonly streams = new Map<string, Set<HostStream>>();

  private readonly heartbeatTimer: NodeJS.Timeout;

  /** Idle streams get an empty batch every `heartbeatMs`, so drivers can tell a live controller from a dead one. */
  constructor(_logger: Logger, heartbeatMs = 10_000) {
    this.heartbeatTimer = setInterval(() => {
      for (const set of this.streams.values()) for (const s of set) s.heartbeat();
    }, heartbeatMs);
    this.heartbeatTimer.unref();
  }

  close(): void {
    clearInterval(this.heartbeatTimer);
  }

  attach(stream: HostStream): void {
    let set = this.streams.get(stream.host);
    if (!set) this.streams.set(stream.host, (set = new Set()));
    set.add(stream);
    stream.pump();
  }

  detach(stream: HostStream): void {
    stream.close();
    const set = this.streams.get(stream.host);
    set?.delete(stream);
    if (set?.size === 0) this.streams.delete(stream.host);
  }

  hasHost(host: string): boolean {
    return this.streams.has(host);
  }

  onHostUpdates(host: string, revision: number, updates: HostUpdate[]): void {
    for (const s of this.streams.get(host) ?? []) s.enqueue(revision, updates);
  }

  onRevision(revision: number): void {
    for (const set of this.streams.values()) for (const s of set) s.markRevision(revision);
  }

  get connectedHosts(): number {
    return this.streams.size;
  }

  hosts(): string[] {
    return [...this.streams.keys()];
  }

  /** Per-host outbox depth (the largest when a host has several streams). */
  queueDepths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [host, set] of this.streams) out.set(host, Math.max(...[...set].map((s) => s.queueDepth)));
    return out;
  }
}
