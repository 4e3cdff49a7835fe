// The driver's half of "revoked connections end" (DESIGN §6.14) that has
// state and does I/O: the families' policy epochs, which applies advance
// them (RevocationWatch, pure), the departed addresses refused mid-stream
// pick-ups (pal-ct-gone), and the conntrack deletions for addresses that
// left an endpoint. driver.ts calls it from its apply loop; the bench
// (test/bench/revoke.ts) drives it the same way.
//
// Deletions come in two kinds:
//   - an address that left an interface but is still on the host (its
//     endpoint replaced at the same interface, or moved to another):
//     deleted *before* the apply that did it is reported, since the new
//     endpoint could otherwise carry the old one's connections on;
//   - an address that left the host: its old connections are already
//     judged again by the current policy (the epoch) and find no endpoint;
//     the entries only matter once another endpoint takes the address. So
//     they are deleted in the background (one `conntrack -D` dumps the whole
//     table: hundreds of milliseconds at 100,000 entries), and an apply
//     that brings one of these addresses back waits for its deletion.
import type { Logger } from "pino";
import type { ChainDef } from "../../contract/host-update.js";
import type { IpVersion } from "../../model/index.js";
import { deleteConntrack, type ConntrackTarget } from "../kernel/conntrack.js";
import type { CommandRunner } from "../kernel/command-runner.js";
import type { BridgeLayer } from "../plan/bridge-twins.js";
import type { Epochs } from "../plan/plan-input.js";
import { GONE_CAP, GONE_WINDOW_MS, initialEpoch, nextEpoch, RevocationWatch, type GoneAddress } from "../plan/revocation.js";
import type { DesiredChanges, DesiredSet } from "../sync/desired-state.js";

export interface RevocationStats {
  epochAdvanced(families: readonly IpVersion[]): void;
  connectionsDeleted(n: number): void;
  connectionsDeleteFailed(): void;
}

export interface RevocationStateOptions {
  families: readonly IpVersion[];
  /** Interface prefixes: only a workload interface's addresses are deleted (not a bridge twin's). */
  prefixes: readonly string[];
  runner: CommandRunner;
  logger: Logger;
  stats: RevocationStats;
  /** The conntrack zone of an interface (a bridge port's), when known; undefined = every zone. */
  zoneOf(iface: string): number | undefined;
  /** The departed-address window ended, or a background deletion failed: an apply is due. */
  onApplyDue(): void;
  /** For tests: the clock. */
  now?: () => number;
}

/** Per family, epoch -> the revision whose apply advanced to it (bounded: the newest). */
const EPOCH_REVISIONS_KEPT = 1_024;
/** Addresses waiting for their deletion, at most (the oldest are given up, with an error). */
const QUEUE_CAP = 100_000;

export class RevocationState {
  readonly epochs: Epochs = {};
  private readonly watch: RevocationWatch;
  private readonly epochRevisions: Record<IpVersion, Map<number, number>> = { 4: new Map(), 6: new Map() };
  /** Deleted before the apply is reported: "family net iface" -> address. */
  private readonly now = new Map<string, GoneAddress>();
  /** Deleted in the background. */
  private readonly later = new Map<string, GoneAddress>();
  private background: Promise<void> | undefined;
  /** An apply brought back an address whose background deletion is pending: it waits for it. */
  private mustWait = false;
  private readonly departed: Record<IpVersion, Map<string, number>> = { 4: new Map(), 6: new Map() };
  private departedTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly clock: () => number;
  private layer: BridgeLayer | undefined;

  constructor(private readonly o: RevocationStateOptions) {
    // A random start: a restarted driver judges every connection once more
    // and never takes another driver's marks for its own.
    for (const f of o.families) this.epochs[f] = initialEpoch();
    this.watch = new RevocationWatch(o.families, (iface) => o.prefixes.some((p) => iface.startsWith(p)));
    this.clock = o.now ?? Date.now;
  }

  /** The bridge layer whose base chains carry the epochs (created with `epochs`, then attached). */
  attach(layer: BridgeLayer): void {
    this.layer = layer;
  }

  /** The revision whose apply advanced `family` to `epoch` (an ended connection's report names it). */
  revisionOfEpoch(family: IpVersion, epoch: number): number | undefined {
    return this.epochs[family] === undefined ? undefined : this.epochRevisions[family].get(epoch);
  }

  /**
   * One apply's plan is being made (synchronously, in the apply loop's
   * take): whether it may revoke, and so advances the epochs in its own
   * iptables-restore (their base chains join its changes); which addresses
   * left. Returns the apply's changes.
   */
  take(view: { chains: ReadonlyMap<string, ChainDef>; sets: ReadonlyMap<string, DesiredSet>; endpoints: ReadonlyMap<string, string> }, changes: DesiredChanges | undefined, revision: number): DesiredChanges | undefined {
    const verdict = this.watch.observe(view, changes);
    for (const g of verdict.gone) {
      const k = `${g.family} ${g.net} ${g.iface}`;
      const q = g.stillOnHost ? this.now : this.later;
      q.delete(k);
      q.set(k, g);
    }
    if (this.later.size && verdict.arrived.length) {
      const pendingNets = new Set([...this.later.values()].map((g) => `${g.family} ${g.net}`));
      if (verdict.arrived.some((a) => pendingNets.has(`${a.family} ${a.net}`))) this.mustWait = true;
    }
    this.cap(this.now);
    this.cap(this.later);
    const windowChanged = this.departedWindow(verdict.gone);
    if (!verdict.bump.length && !windowChanged) return changes;
    for (const f of verdict.bump) {
      this.epochs[f] = nextEpoch(this.epochs[f]!);
      const m = this.epochRevisions[f];
      m.delete(this.epochs[f]!);
      m.set(this.epochs[f]!, revision);
      if (m.size > EPOCH_REVISIONS_KEPT) m.delete(m.keys().next().value!);
    }
    const keys = this.layer!.setRevocation(this.epochs, this.goneNets(), true);
    if (verdict.bump.length) this.o.stats.epochAdvanced(verdict.bump);
    return changes && { ...changes, chains: new Set([...changes.chains, ...keys]) };
  }

  /** The departed addresses per family, for the base chains (pal-ct-gone). */
  goneNets(): Partial<Record<IpVersion, readonly string[]>> {
    return Object.fromEntries(this.o.families.map((f) => [f, [...this.departed[f].keys()]]));
  }

  /** Whether the apply just made has deletions to wait for. */
  pending(): boolean {
    return this.now.size > 0 || this.mustWait || this.later.size > 0;
  }

  /**
   * After the apply's restores: deletes what must be gone before it is
   * reported (throws, failing the apply, when that fails: the host's status
   * says so, the loop retries, the addresses stay queued), waits for a
   * background deletion an address of this apply depends on, and starts
   * the background deletions. Returns the milliseconds it waited.
   */
  async afterApply(): Promise<number> {
    const t0 = performance.now();
    if (this.mustWait) {
      this.mustWait = false;
      // Brought back before its deletion: delete it now, with the apply.
      for (const [k, g] of this.later) this.now.set(k, g);
      this.later.clear();
      await this.background;
    }
    if (this.now.size) await this.run(this.now, true);
    if (this.later.size && !this.background) {
      // Started on the next turn of the event loop, after the apply is
      // reported: spawning `conntrack` is synchronous (fork and exec, tens
      // of milliseconds from a large process), and it is not the apply's.
      this.background = new Promise<void>((r) => setImmediate(r)).then(() => this.run(this.later, false)).catch(() => {
        // Given to the next apply, which deletes them before it is reported.
        if (!this.stopped) this.o.onApplyDue();
      }).finally(() => { this.background = undefined; });
    }
    return performance.now() - t0;
  }

  /** Resolves when no background deletion runs (tests, the bench). */
  async settled(): Promise<void> {
    while (this.background) await this.background.catch(() => undefined);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.departedTimer);
  }

  private async run(q: Map<string, GoneAddress>, foreground: boolean): Promise<void> {
    const gone = [...q.entries()];
    // One target per (family, net, zone): a bridge port and its bridge's twin are one address.
    const targets = new Map<string, ConntrackTarget>();
    for (const [, g] of gone) {
      const zone = this.o.zoneOf(g.iface);
      targets.set(`${g.family} ${g.net} ${zone ?? "*"}`, { family: g.family, net: g.net, zone });
    }
    const named = gone.map(([, g]) => `${g.net}@${g.iface}`).slice(0, 20);
    let n: number;
    try {
      n = await deleteConntrack(this.o.runner, [...targets.values()]);
    } catch (err) {
      this.o.stats.connectionsDeleteFailed();
      const msg = `could not end the connections of addresses that left an endpoint (${named.join(", ")}): ${(err as Error).message}`;
      if (!foreground) {
        // Retried with the next apply, in the foreground.
        for (const [k, g] of gone) { q.delete(k); this.now.set(k, g); }
        this.o.logger.error({ addresses: named }, msg);
      }
      throw new Error(msg);
    }
    for (const [k] of gone) q.delete(k);
    this.o.stats.connectionsDeleted(n);
    this.o.logger.info({ addresses: named, deleted: n, background: !foreground }, "deleted the connections of addresses that left an endpoint");
  }

  private cap(q: Map<string, GoneAddress>): void {
    if (q.size <= QUEUE_CAP) return;
    let n = 0;
    for (const k of q.keys()) { if (q.size <= QUEUE_CAP) break; q.delete(k); n++; }
    this.o.logger.error({ dropped: n }, "too many addresses waiting for their connections to be deleted; the oldest are given up");
  }

  /**
   * Departed addresses whose mid-stream TCP pick-ups are refused
   * (pal-ct-gone): adds `gone`, drops what expired and what exceeds the cap
   * (the oldest); whether the chain's content changed. When the earliest
   * window ends, the chain changes like a topology change (onApplyDue).
   */
  private departedWindow(gone: readonly GoneAddress[]): boolean {
    const now = this.clock();
    let changed = false;
    for (const g of gone) {
      const m = this.departed[g.family];
      if (!m.has(g.net)) changed = true;
      m.delete(g.net);
      m.set(g.net, now + GONE_WINDOW_MS);
    }
    for (const f of this.o.families) {
      const m = this.departed[f];
      for (const [net, until] of m) {
        if (until > now && m.size <= GONE_CAP) break; // insertion order = expiry order
        m.delete(net);
        changed = true;
      }
    }
    clearTimeout(this.departedTimer);
    const next = Math.min(...this.o.families.flatMap((f) => [...this.departed[f].values()].slice(0, 1)));
    if (Number.isFinite(next) && !this.stopped) {
      this.departedTimer = setTimeout(() => {
        // The chain changes outside an apply: pending in the layer, like a topology change.
        if (this.departedWindow([])) {
          this.layer?.setRevocation(this.epochs, this.goneNets(), false);
          this.o.onApplyDue();
        }
      }, Math.max(1_000, next - now));
      this.departedTimer.unref?.();
    }
    return changed;
  }
}
